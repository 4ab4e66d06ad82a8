// An esbuild plugin for the pages that import examples/char-lm/model.ts (the demo's and the
// peers bench's): model.ts's file:// saving (fileIO, registerFileIO) is Node-only and never
// called in a page; these stand-ins let the rest of the module load in the browser.
const NODE_ONLY = {
  'node:fs': ['mkdirSync', 'readFileSync', 'writeFileSync'],
  'node:path': ['dirname', 'join'],
};
export const nodeStubs = {
  name: 'node-stubs',
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (args) => (args.path in NODE_ONLY
      ? { path: args.path, namespace: 'node-stub' }
      : { errors: [{ text: `${args.path} (imported by ${args.importer}) has no browser stand-in.` }] }));
    b.onLoad({ filter: /.*/, namespace: 'node-stub' }, (args) => ({
      loader: 'js',
      contents: NODE_ONLY[args.path].map((name) =>
        `export function ${name}() { throw new Error('${args.path} ${name}() is not available in the browser.'); }`).join('\n'),
    }));
  },
};

