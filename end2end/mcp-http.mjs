// A minimal MCP client over plain HTTP (streamable HTTP transport): initialize, the initialized
// notification, then requests. Responses may be JSON or SSE (`data:` lines).

const ACCEPT = 'application/json, text/event-stream';

/** Reads the JSON-RPC message answering `id` from a JSON or SSE response, then stops reading. */
async function readAnswer(res, id) {
  const type = res.headers.get('content-type') || '';
  if (type.includes('application/json')) return res.json();
  if (!type.includes('text/event-stream')) {
    throw new Error(`unexpected content-type ${type}: ${await res.text()}`);
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (value) buffer += decoder.decode(value, { stream: true });
      // Events are separated by a blank line; an event's data is its `data:` lines joined.
      let cut;
      while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, '');
        const data = event.split(/\r?\n/).filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).replace(/^ /, '')).join('\n');
        if (!data) continue;
        const msg = JSON.parse(data);
        if (msg.id === id) return msg;
      }
      if (done) throw new Error(`stream ended without an answer to request ${id}`);
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

export class McpHttpClient {
  constructor(url, token) {
    this.url = url;
    this.token = token;
    this.sessionId = null;
    this.protocolVersion = null;
    this.nextId = 1;
  }

  headers() {
    const h = { Accept: ACCEPT, 'Content-Type': 'application/json' };
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    if (this.sessionId) h['mcp-session-id'] = this.sessionId;
    if (this.protocolVersion) h['mcp-protocol-version'] = this.protocolVersion;
    return h;
  }

  async post(body) {
    const res = await fetch(this.url, {
      method: 'POST', headers: this.headers(), body: JSON.stringify(body), signal: AbortSignal.timeout(60_000),
    });
    return res;
  }

  /** Sends a request and returns the whole JSON-RPC answer ({result} or {error}). */
  async request(method, params) {
    const id = this.nextId++;
    const res = await this.post({ jsonrpc: '2.0', id, method, params });
    if (!res.ok) throw new Error(`${method}: HTTP ${res.status} ${await res.text()}`);
    return readAnswer(res, id);
  }

  async initialize() {
    const id = this.nextId++;
    const res = await this.post({
      jsonrpc: '2.0', id, method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'toolgate-e2e', version: '0' } },
    });
    if (!res.ok) throw new Error(`initialize: HTTP ${res.status} ${await res.text()}`);
    this.sessionId = res.headers.get('mcp-session-id');
    const answer = await readAnswer(res, id);
    if (answer.error) throw new Error(`initialize failed: ${JSON.stringify(answer.error)}`);
    this.protocolVersion = answer.result.protocolVersion;
    const note = await this.post({ jsonrpc: '2.0', method: 'notifications/initialized' });
    if (note.status !== 202 && !note.ok) throw new Error(`notifications/initialized: HTTP ${note.status}`);
    await note.body?.cancel();
    return answer.result;
  }

  callTool(name, args = {}) {
    return this.request('tools/call', { name, arguments: args });
  }

  async close() {
    if (!this.sessionId) return;
    await fetch(this.url, { method: 'DELETE', headers: this.headers() }).catch(() => {});
  }
}
