// Starting and stopping the processes the browser tests need: server-everything (the upstream MCP
// server) and the real toolgate binary, each in its own process group, logging to files.
import { spawn, execFile } from 'node:child_process';
import { openSync, closeSync, readFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..');
export const toolgateBin = process.env.TOOLGATE_BIN || path.join(repoRoot, 'target', 'debug', 'toolgate');
export const everythingEntry = path.join(
  here, 'node_modules', '@modelcontextprotocol', 'server-everything', 'dist', 'index.js',
);

/** A free TCP port on 127.0.0.1 (the OS picks one; it is released before use). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** The last `chars` characters of a log file. */
export function logTail(file, chars = 6000) {
  try {
    const text = readFileSync(file, 'utf8');
    return text.slice(-chars);
  } catch (e) {
    return `<cannot read ${file}: ${e.message}>`;
  }
}

/** Starts `argv` with output to `logFile`; returns a handle with stop(). */
export function startProcess(name, argv, { env, cwd, logFile }) {
  const fd = openSync(logFile, 'a');
  const child = spawn(argv[0], argv.slice(1), {
    env, cwd, stdio: ['ignore', fd, fd], detached: true,
  });
  closeSync(fd);
  let exited = null;
  const exit = new Promise((resolve) => child.on('exit', (code, signal) => {
    exited = { code, signal };
    resolve(exited);
  }));
  return {
    name, child, logFile,
    exited: () => exited,
    async stop() {
      if (exited) return;
      // Negative pid: the process group this child leads (detached), and nothing else.
      try { process.kill(-child.pid, 'SIGTERM'); } catch { return; }
      const timer = new Promise((r) => setTimeout(r, 15_000, 'timeout'));
      if ((await Promise.race([exit, timer])) === 'timeout') {
        try { process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
        await exit;
      }
    },
  };
}

/** Polls `probe` until it resolves true; fails when the process exits or after `timeoutMs`. */
export async function waitUntil(what, proc, probe, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exited()) {
      throw new Error(`${what} exited (${JSON.stringify(proc.exited())}); log ${proc.logFile}:\n${logTail(proc.logFile)}`);
    }
    try {
      if (await probe()) return;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) {
      throw new Error(`${what} not ready after ${timeoutMs / 1000} s; log ${proc.logFile}:\n${logTail(proc.logFile)}`);
    }
    await new Promise((r) => setTimeout(r, 100)); // polling interval of a bounded loop
  }
}

export function portOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/** Runs a toolgate CLI command to completion; returns its standard output. */
export async function toolgateCli(args, { env, cwd }) {
  if (!existsSync(toolgateBin)) throw new Error(`${toolgateBin} is missing: build it first (cargo leptos build)`);
  try {
    const { stdout } = await execFileP(toolgateBin, args, { env, cwd, timeout: 120_000 });
    return stdout;
  } catch (e) {
    throw new Error(`toolgate ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
  }
}

/**
 * A minimal MCP server over streamable HTTP (JSON answers, no sessions) whose tool list a test
 * changes while it runs: new tools, changed descriptions. `tools` are MCP tool objects
 * ({ name, description, inputSchema, annotations }). Resolves to { url, tools, close() }.
 */
export async function startToyMcp(tools) {
  const http = await import('node:http');
  const state = { tools };
  const answer = (msg) => {
    switch (msg.method) {
      case 'initialize':
        return {
          protocolVersion: msg.params?.protocolVersion || '2025-06-18',
          capabilities: { tools: { listChanged: false } },
          serverInfo: { name: 'toolgate-e2e-toy', version: '1.0.0' },
        };
      case 'ping':
        return {};
      case 'tools/list':
        return { tools: state.tools };
      case 'tools/call':
        return { content: [{ type: 'text', text: `called ${msg.params?.name}` }] };
      default:
        return null;
    }
  };
  const server = http.createServer((req, res) => {
    if (req.method !== 'POST') {
      res.writeHead(405, { Allow: 'POST' }).end();
      return;
    }
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      let msg;
      try { msg = JSON.parse(body); } catch {
        res.writeHead(400).end();
        return;
      }
      // Notifications and responses get no answer.
      if (msg.id === undefined || msg.method === undefined) {
        res.writeHead(202).end();
        return;
      }
      const result = answer(msg);
      const reply = result === null
        ? { jsonrpc: '2.0', id: msg.id, error: { code: -32601, message: `no method ${msg.method}` } }
        : { jsonrpc: '2.0', id: msg.id, result };
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(reply));
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/mcp`,
    get tools() { return state.tools; },
    set tools(list) { state.tools = list; },
    close: () => new Promise((resolve) => {
      server.closeAllConnections?.();
      server.close(() => resolve());
    }),
  };
}
