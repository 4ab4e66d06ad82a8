// A tiny static file server for the browser demo (WebGPU needs http://localhost or https, not
// file://). `node examples/browser/serve.mjs [port]` serves this folder on http://localhost:port
// (default 8080); scripts/browser-test.mjs imports `serve` and asks for a free port (0).
import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, extname, join, normalize, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.bin': 'application/octet-stream',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.md': 'text/plain; charset=utf-8',
};

/**
 * Serves the files under `root` on 127.0.0.1:`port` (0: any free port), and those under
 * `mounts[prefix]` at URLs starting `/prefix/` (the peers bench serves onnxruntime-web's files
 * so). Resolves to the server and its base URL, e.g. `http://127.0.0.1:41234/`.
 */
export function serve(root, port = 0, mounts = {}) {
  const server = createServer((request, response) => {
    let path = '';
    try {
      path = decodeURIComponent(new URL(request.url ?? '/', 'http://localhost').pathname);
      const prefix = Object.keys(mounts).find((p) => path.startsWith(`/${p}/`));
      const base = normalize((prefix === undefined ? root : mounts[prefix]) + sep);
      let file = normalize(join(base, prefix === undefined ? path : path.slice(prefix.length + 1)));
      // nothing outside the served folder, whatever the URL says
      if (!file.startsWith(base)) {
        response.writeHead(403).end('forbidden');
        return;
      }
      if (statSync(file).isDirectory()) file = join(file, 'index.html');
      const size = statSync(file).size;
      response.writeHead(200, {
        'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'content-length': size, 'cache-control': 'no-store',
      });
      createReadStream(file).pipe(response);
    } catch {
      response.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${path}`);
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      resolve({ server, url: `http://127.0.0.1:${address.port}/` });
    });
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const port = Number(process.argv[2] ?? 8080);
  const { url } = await serve(dirname(fileURLToPath(import.meta.url)), port);
  console.log(`serving examples/browser on ${url}: open ${url}index.html or ${url}generate.html (Ctrl-C stops)`);
}
