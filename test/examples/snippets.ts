// The documentation's TypeScript examples as programs the doc-examples test runs: found in the
// TSDoc of src/ and in the Markdown of README.md and docs/, their imports checked against what
// the package exports, and each statement whose comment states a value turned into a check.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import ts from 'typescript';

/** One fenced `ts` block of the documentation. */
export interface Snippet {
  /** The file it is in, relative to the repository root. */
  file: string;
  /** The line of the file its first line of code is on (1-based). */
  line: number;
  code: string;
}

/** How a statement's comment says what it gives: its value, the values it prints, or an error. */
export type Claim = 'value' | 'print' | 'throws';

/** A name a snippet imports: `imported` is '*' for a namespace, 'default' for a default import. */
export interface ImportedName {
  imported: string;
  local: string;
}

/** One of a snippet's import declarations. */
export interface SnippetImport {
  from: string;
  /** The values it binds (its type-only names left out). */
  names: ImportedName[];
  /** Every local name it binds, types too. */
  locals: string[];
  statement: ts.ImportDeclaration;
}

/** A snippet made runnable: `body` is the script of an async function of `__scope` and `__check`. */
export interface Program {
  body: string;
  /** How many statements it checks. */
  checks: number;
}

const FENCE_OPEN = /^```ts\s*$/;
const FENCE_CLOSE = /^```\s*$/;

/** Every `ts` block of the TSDoc comments of a TypeScript source (lines led by ` * `). */
export function tsdocSnippets(file: string, text: string): Snippet[] {
  return fencedBlocks(file, text.split('\n'), (line) => {
    const m = /^\s*\* ?(.*)$/.exec(line);
    return m ? m[1] : null;
  });
}

/** Every `ts` block of a Markdown file. */
export function markdownSnippets(file: string, text: string): Snippet[] {
  return fencedBlocks(file, text.split('\n'), (line) => line);
}

function fencedBlocks(file: string, lines: string[], content: (line: string) => string | null): Snippet[] {
  const found: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = content(lines[i]);
    if (open === null || !FENCE_OPEN.test(open.trim())) continue;
    const code: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const inner = content(lines[j]);
      if (inner === null) throw new Error(`${file}:${i + 1}: a \`\`\`ts block the comment ends before closing`);
      if (FENCE_CLOSE.test(inner.trim())) break;
      code.push(inner);
    }
    if (j === lines.length) throw new Error(`${file}:${i + 1}: a \`\`\`ts block that never closes`);
    found.push({ file, line: i + 2, code: code.join('\n') });
    i = j;
  }
  return found;
}

/** Every snippet of the repository at `root`: src/**.ts's TSDoc, README.md, docs/*.md. */
export function repositorySnippets(root: string): Snippet[] {
  const walk = (dir: string): string[] => readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]))
    .sort();
  const read = (path: string) => readFileSync(path, 'utf8');
  const sources = walk(join(root, 'src')).filter((f) => f.endsWith('.ts'));
  const guides = [join(root, 'README.md'), ...walk(join(root, 'docs')).filter((f) => /\/docs\/[^/]+\.md$/.test(f))];
  return [
    ...sources.flatMap((f) => tsdocSnippets(relative(root, f), read(f))),
    ...guides.flatMap((f) => markdownSnippets(relative(root, f), read(f))),
  ];
}

/**
 * The values a comment states, as the sources of JavaScript literals, or that it states an error:
 * `// 6`, `// [1, 3, 65]: …`, `// { max: 7 }`, `// 'reference', and …`, `// [1, 6], [1, 2]` (one
 * for each name a declaration binds), `// throws: …`. A comment that starts with a value must end
 * there or go on after `:`, `;` or `,`; null where it states none (it starts with a word).
 */
export function statedValue(comment: string): { literals: string[]; throws: boolean } | null {
  let text = comment.replace(/^\/\/\s*/, '').trim();
  if (/^throws(:|$)/.test(text)) return { literals: [], throws: true };
  const literals: string[] = [];
  for (;;) {
    const end = literalLength(text);
    if (end === null) break;
    literals.push(text.slice(0, end));
    text = text.slice(end).trim();
    if (!text.startsWith(',') || literalLength(text.slice(1).trim()) === null) break;
    text = text.slice(1).trim();
  }
  if (literals.length === 0) return null;
  if (text !== '' && !/^[:;,]/.test(text)) {
    throw new Error(`the comment '${comment}' starts with a value but goes on with '${text}': ` +
      `end the value there or follow it with ':', ';' or ','`);
  }
  return { literals, throws: false };
}

/** The length of the literal `text` starts with, or null where it starts with none. */
function literalLength(text: string): number | null {
  const word = /^(-?\d+(\.\d+)?(e-?\d+)?|true|false|null|undefined|NaN|-?Infinity)\b/.exec(text);
  if (word) return word[0].length;
  return /^['"[{]/.test(text) ? literalEnd(text) : null;
}

/** Whether a literal is a value alone (numbers, strings, true, false, null), not a shape's names as `[B, T, D]`. */
function isValue(literal: string): boolean {
  // the words outside strings, but an object's keys
  const words = literal.replace(/'[^']*'|"[^"]*"/g, '').match(/\b[A-Za-z_$][\w$]*\b(?!\s*:)/g) ?? [];
  return words.every((w) => ['true', 'false', 'null', 'undefined', 'NaN', 'Infinity'].includes(w));
}

/** Where the bracketed or quoted literal at the start of `text` ends. */
function literalEnd(text: string): number {
  let depth = 0;
  let quote: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === '\\') i++;
      else if (c === quote) {
        quote = null;
        if (depth === 0) return i + 1;
      }
    } else if (c === "'" || c === '"') quote = c;
    else if (c === '[' || c === '{') depth++;
    else if (c === ']' || c === '}') {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  throw new Error(`the comment's value '${text}' does not close`);
}

/**
 * The comment stating a statement's value: on its last line, or, for an expression statement,
 * alone on the line after it (a declaration's next line says what comes next).
 */
function statementComment(source: ts.SourceFile, statement: ts.Statement): string | null {
  const text = source.text;
  const trailing = ts.getTrailingCommentRanges(text, statement.end)?.[0];
  if (trailing) return text.slice(trailing.pos, trailing.end);
  if (!ts.isExpressionStatement(statement)) return null;
  const next = ts.getLeadingCommentRanges(text, statement.end)?.[0];
  if (!next || next.kind !== ts.SyntaxKind.SingleLineCommentTrivia) return null;
  const lineOf = (pos: number) => source.getLineAndCharacterOfPosition(pos).line;
  return lineOf(next.pos) === lineOf(statement.end) + 1 ? text.slice(next.pos, next.end) : null;
}

/** A snippet parsed, and its import declarations. */
export function parseSnippet(snippet: Snippet): { source: ts.SourceFile; imports: SnippetImport[] } {
  const source = ts.createSourceFile('snippet.ts', snippet.code, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const imports = source.statements.filter(ts.isImportDeclaration).map((statement): SnippetImport => {
    const names: ImportedName[] = [];
    const locals: string[] = [];
    const clause = statement.importClause;
    const bind = (imported: string, local: string, typeOnly: boolean) => {
      locals.push(local);
      if (!typeOnly && !clause!.isTypeOnly) names.push({ imported, local });
    };
    if (clause?.name) bind('default', clause.name.text, false);
    const bindings = clause?.namedBindings;
    if (bindings && ts.isNamespaceImport(bindings)) bind('*', bindings.name.text, false);
    if (bindings && ts.isNamedImports(bindings)) {
      for (const e of bindings.elements) bind((e.propertyName ?? e.name).text, e.name.text, e.isTypeOnly);
    }
    return { from: (statement.moduleSpecifier as ts.StringLiteral).text, names, locals, statement };
  });
  return { source, imports };
}

/** The names a declaration binds, in order: `x`, `[a, , b]`, `{ output, state: next }`. */
function boundNames(statement: ts.VariableStatement): string[] {
  const names = (name: ts.BindingName): string[] => ts.isIdentifier(name) ? [name.text]
    : name.elements.flatMap((e) => (ts.isOmittedExpression(e) ? [] : names(e.name)));
  return statement.declarationList.declarations.flatMap((d) => names(d.name));
}

/** `x.print()` → x; `console.log(x)` → x; else null. */
function shownValue(e: ts.Expression): { shown: ts.Expression; claim: Claim } | null {
  if (!ts.isCallExpression(e) || !ts.isPropertyAccessExpression(e.expression)) return null;
  const { expression: target, name } = e.expression;
  if (name.text === 'print' && e.arguments.length === 0) return { shown: target, claim: 'print' };
  if (ts.isIdentifier(target) && target.text === 'console' && name.text === 'log' && e.arguments.length === 1) {
    return { shown: e.arguments[0], claim: 'value' };
  }
  return null;
}

/**
 * The snippet as the body of an async function of `__scope` (the names it may use) and
 * `__check(thunk, claim, literal, where)`: its imports removed ({@link parseSnippet} lists them), every top-level
 * expression statement whose comment states a value handed to `__check`, and every declaration's
 * names whose comment states their values checked after it, the rest as written,
 * in a block of its own so that its declarations may shadow the scope's names. TypeScript's
 * types are erased.
 */
export function runnable(snippet: Snippet, scopeNames: readonly string[]): Program {
  const where = (node: ts.Node) => `${snippet.file}:${snippet.line + source.getLineAndCharacterOfPosition(node.getStart(source)).line}`;
  const { source, imports } = parseSnippet(snippet);
  const edits = imports.map(({ statement }) => ({ start: statement.getStart(source), end: statement.end, text: '' }));
  let checks = 0;
  const check = (expression: string, claim: Claim, literal: string | null, at: ts.Node) =>
    `await __check(async () => (${expression}), ${JSON.stringify(claim)}, ${JSON.stringify(literal)}, ${JSON.stringify(where(at))});`;
  for (const statement of source.statements) {
    if (!ts.isExpressionStatement(statement) && !ts.isVariableStatement(statement)) continue;
    const comment = statementComment(source, statement);
    if (!comment) continue;
    let stated: ReturnType<typeof statedValue>;
    try {
      stated = statedValue(comment);
    } catch (e) {
      throw new Error(`${where(statement)}: ${(e as Error).message}`);
    }
    if (!stated) continue;
    const start = statement.getStart(source);
    if (ts.isVariableStatement(statement)) {
      // a declaration's values, one for each name it binds in order, where they are values (not `[B, T, D]`)
      const names = boundNames(statement);
      if (stated.throws || !stated.literals.every(isValue)) continue;
      if (stated.literals.length > names.length) {
        throw new Error(`${where(statement)}: the comment states ${stated.literals.length} values for ${names.length} names`);
      }
      const checked = stated.literals.map((literal, i) => check(names[i]!, 'value', literal, statement));
      edits.push({ start, end: statement.end, text: [statement.getText(source), ...checked].join('\n') });
      checks += checked.length;
      continue;
    }
    if (stated.literals.length > 1) throw new Error(`${where(statement)}: the comment states ${stated.literals.length} values for one expression`);
    const shown = stated.throws ? null : shownValue(statement.expression);
    const claim: Claim = stated.throws ? 'throws' : shown?.claim ?? 'value';
    const expression = (shown?.shown ?? statement.expression).getText(source);
    edits.push({ start, end: statement.end, text: check(expression, claim, stated.literals[0] ?? null, statement) });
    checks++;
  }
  let code = snippet.code;
  for (const edit of edits.sort((a, b) => b.start - a.start)) code = code.slice(0, edit.start) + edit.text + code.slice(edit.end);
  const wrapped = `async function __example(__scope, __check) {\n` +
    `const { ${scopeNames.join(', ')} } = __scope;\n{\n${code}\n}\n}`;
  const body = ts.transpileModule(wrapped, {
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.None, removeComments: false },
    reportDiagnostics: false,
  }).outputText;
  return { body: `${body}\nreturn __example;`, checks };
}

/** A snippet's type errors, each as `file:line: message`. */
export interface SnippetTypeErrors {
  snippet: Snippet;
  messages: string[];
}

/**
 * Type-checks every snippet as a user's module would be checked under the project's tsconfig
 * (unused names allowed): its own imports, with 'tfjs-mixers' and 'tfjs-mixers/node' the
 * sources, and without importing them the names the test's runs give it (tf, the package's
 * exports, its source's own exports), its code in a block of its own as {@link runnable} runs it.
 */
export function typeErrors(root: string, snippets: readonly Snippet[]): SnippetTypeErrors[] {
  const options = projectOptions(root);
  Object.assign(options, { noUnusedLocals: false, noUnusedParameters: false });
  const index = join(root, 'src/index.ts');
  const sources = [...new Set([index, ...snippets.filter((s) => s.file.startsWith('src/')).map((s) => join(root, s.file))])];
  const first = ts.createProgram(sources, options);
  const checker = first.getTypeChecker();
  const exportsOf = (path: string) => {
    const symbol = checker.getSymbolAtLocation(first.getSourceFile(path)!)!;
    return checker.getExportsOfModule(symbol).map((e) => e.name).filter((n) => n !== 'default');
  };
  const indexNames = exportsOf(index);
  const dir = join(root, 'test/examples');
  const specifier = (path: string) => `./${relative(dir, path).replace(/\.ts$/, '.js')}`;
  const virtual = new Map<string, { snippet: Snippet; text: string; offset: number }>();
  snippets.forEach((snippet, n) => {
    const { source, imports: declared } = parseSnippet(snippet);
    const imported = new Set(declared.flatMap((d) => d.locals));
    let code = snippet.code;
    for (const { statement } of [...declared].reverse()) code = code.slice(0, statement.getStart(source)) + code.slice(statement.end);
    const imports = declared.map(({ from, statement }) => {
      const path = from === 'tfjs-mixers' ? specifier(index)
        : from === 'tfjs-mixers/node' ? specifier(join(root, 'src/node.ts'))
        : from.startsWith('.') ? specifier(join(root, dirname(snippet.file), from.replace(/\.js$/, '.ts'))) : from;
      return statement.getText(source).replace(/(['"])[^'"]+\1(\s*;?)$/, `'${path}'$2`);
    });
    const own = snippet.file.startsWith('src/') ? exportsOf(join(root, snippet.file)) : [];
    const given = (names: string[]) => names.filter((name) => !imported.has(name) && imported.add(name));
    if (given(['tf']).length) imports.push(`import * as tf from '@tensorflow/tfjs';`);
    const ownNames = given(own);
    if (ownNames.length) imports.push(`import { ${ownNames.join(', ')} } from '${specifier(join(root, snippet.file))}';`);
    const indexGiven = given(indexNames);
    if (indexGiven.length) imports.push(`import { ${indexGiven.join(', ')} } from '${specifier(index)}';`);
    if (given(['WebGPUBackend']).length) imports.push(`import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';`);
    const head = `${imports.join('\n')}\nexport {};\n{\n`;
    virtual.set(join(dir, `snippet-${n}.ts`), { snippet, text: `${head}${code}\n}\n`, offset: head.split('\n').length - 1 });
  });
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile;
  host.getSourceFile = (name, language, ...rest) => {
    const v = virtual.get(name);
    return v ? ts.createSourceFile(name, v.text, language) : getSourceFile.call(host, name, language, ...rest);
  };
  const fileExists = host.fileExists;
  host.fileExists = (name) => virtual.has(name) || fileExists.call(host, name);
  const program = ts.createProgram([...virtual.keys()], options, host, first);
  const found: SnippetTypeErrors[] = [];
  for (const [name, { snippet, offset }] of virtual) {
    const file = program.getSourceFile(name)!;
    const messages = [...program.getSyntacticDiagnostics(file), ...program.getSemanticDiagnostics(file)].map((d) => {
      const line = d.start === undefined ? 0 : file.getLineAndCharacterOfPosition(d.start).line - offset;
      return `${snippet.file}:${snippet.line + line}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    });
    if (messages.length) found.push({ snippet, messages });
  }
  return found;
}

function projectOptions(root: string): ts.CompilerOptions {
  const config = ts.readConfigFile(join(root, 'tsconfig.json'), ts.sys.readFile);
  return { ...ts.parseJsonConfigFileContent(config.config, ts.sys, root).options, noEmit: true, declaration: false };
}

/**
 * The package's public values (src/index.ts's exports, the members of its `ops` and `layers`,
 * src/node.ts's) whose TSDoc has no `@example`, as `name (file)`.
 */
export function publicValuesWithoutExample(root: string): string[] {
  const entries = { '': join(root, 'src/index.ts'), 'tfjs-mixers/node: ': join(root, 'src/node.ts') };
  const program = ts.createProgram(Object.values(entries), projectOptions(root));
  const checker = program.getTypeChecker();
  const missing: string[] = [];
  const visit = (module: ts.Symbol, prefix: string) => {
    for (const exported of checker.getExportsOfModule(module)) {
      const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
      const declaration = symbol.valueDeclaration;
      if (!declaration) continue;                                    // a type
      if (ts.isSourceFile(declaration)) {                             // export * as ops
        visit(symbol, `${prefix}${exported.name}.`);
        continue;
      }
      // a const's TSDoc is its statement's
      const documented = ts.isVariableDeclaration(declaration) ? declaration.parent.parent : declaration;
      if (!ts.getJSDocTags(documented).some((tag) => tag.tagName.text === 'example')) {
        missing.push(`${prefix}${exported.name} (${relative(root, declaration.getSourceFile().fileName)})`);
      }
    }
  };
  for (const [prefix, path] of Object.entries(entries)) visit(checker.getSymbolAtLocation(program.getSourceFile(path)!)!, prefix);
  return missing;
}
