// The part of GenAI NanoGPT's API (@genai-fi/nanogpt 1.3.0) that bench/peers/nanogpt-page.ts
// calls, written from its published type declarations. The package is proprietary: lm.mjs
// installs it into the run's own scratch folder and bundles the page from there, so it is never
// a dependency of this repository, and this repository's typecheck does not need it.
declare module '@genai-fi/nanogpt' {
  export interface NanoGptLogEntry {
    step: number;
    totalTokens: number;
    trainingMetrics: { loss: number };
  }
  export interface NanoGptJob {
    id: string;
    history: NanoGptLogEntry[] | null;
  }
  interface NanoGptTraining {
    job(options: Record<string, unknown>, data: unknown[], datasets: { id: string; name: string; conversational: boolean }[]): Promise<NanoGptJob>;
    cancel(id?: string): void;
    on(event: 'progress', listener: (job: NanoGptJob) => void): void;
    on(event: 'completed' | 'cancelled', listener: (id: string) => void): void;
    on(event: 'error', listener: (id: string, error: Error) => void): void;
    off(event: string, listener: (...args: never[]) => void): void;
  }
  interface NanoGptResponses {
    create(options: Record<string, unknown>, callback?: () => void): Promise<{ done: boolean }>;
  }
  export class TeachableLLM {
    static selectBackend(backend: 'webgpu'): Promise<void>;
    static create(tokeniser: 'char', config: Record<string, unknown>): TeachableLLM;
    trainTokeniser(text: unknown[]): Promise<number>;
    getNumParams(): number;
    readonly training: NanoGptTraining;
    readonly responses: NanoGptResponses;
    dispose(): void;
  }
  export const data: {
    MemoryConversationStream: new (conversations: { role: 'text'; content: string }[][]) => unknown;
  };
}
