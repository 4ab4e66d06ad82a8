// Types of browser.mjs's helpers for the TypeScript runners that use them (bench/backends-run.ts).
import type { BrowserContext, Page } from 'playwright-core';

export function argAfter(flag: string): string | undefined;
export function bundlePage(entry: string, out: string, options?: Record<string, unknown>): Promise<void>;
export function openBrowser(): Promise<{ context: BrowserContext; close(): Promise<void> }>;
export function openPage(context: BrowserContext, dir: string, mounts: Record<string, string>, log: (line: string) => void):
  Promise<{ page: Page; url: string; close(): void }>;
export function resultsBase(dir: string, adapter: string, kind: string): string;
export function loads(l: number[]): string;
