// tapgate: sends Node's own HTTPS (built-in fetch, which the OpenAI and Anthropic SDKs use, and the https
// module) through HTTPS_PROXY, honouring NO_PROXY. Node before 24.5 (and 22.21) ignores those variables;
// later ones read them under NODE_USE_ENV_PROXY=1, and then this preload steps aside.
// Loaded with NODE_OPTIONS="--require=<this file>" (tapgate shell-init, tapgate run). Trust in the
// gateway's CA comes from NODE_EXTRA_CA_CERTS, which every Node reads.
'use strict';

const http = require('node:http');
const https = require('node:https');
const net = require('node:net');
const tls = require('node:tls');

function nativeEnvProxy() {
  const [major, minor] = process.versions.node.split('.').map(Number);
  const supported = major > 24 || (major === 24 && minor >= 5) || (major === 22 && minor >= 21);
  return supported && process.env.NODE_USE_ENV_PROXY === '1';
}

function proxyFromEnv() {
  const value = process.env.HTTPS_PROXY || process.env.https_proxy || process.env.HTTP_PROXY || process.env.http_proxy;
  if (!value) return null;
  try {
    return new URL(value.includes('://') ? value : `http://${value}`);
  } catch {
    process.emitWarning(`tapgate: HTTPS_PROXY is not a URL (${value.replace(/\/\/[^@/]*@/, '//***@')}); not proxying`);
    return null;
  }
}

function bypassed(host) {
  const list = (process.env.NO_PROXY || process.env.no_proxy || '').split(/[\s,]+/).filter(Boolean);
  host = host.replace(/^\[|\]$/g, '').toLowerCase();
  return list.some((entry) => {
    entry = entry.replace(/^\[|\]$/g, '').replace(/:\d+$/, '').toLowerCase();
    if (entry === '*') return true;
    if (entry.startsWith('*.')) entry = entry.slice(1);
    return entry.startsWith('.') ? host.endsWith(entry) || host === entry.slice(1) : host === entry || host.endsWith(`.${entry}`);
  });
}

function install(proxy) {
  const auth = proxy.username || proxy.password
    ? { 'proxy-authorization': 'Basic ' + Buffer.from(
        `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64') }
    : {};

  // One CONNECT tunnel through the proxy to host:port; callback(error, socket).
  function tunnel(host, port, callback) {
    const target = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    const req = http.request({
      host: proxy.hostname.replace(/^\[|\]$/g, ''), port: proxy.port || 80, method: 'CONNECT', path: target,
      headers: { host: target, ...auth }, agent: false,
    });
    req.once('connect', (res, socket) => {
      if (res.statusCode === 200) return callback(null, socket);
      socket.destroy();
      callback(new Error(`tapgate proxy ${proxy.host} answered ${res.statusCode} to CONNECT ${target}`));
    });
    req.once('error', callback);
    req.end();
  }

  // Built-in fetch: an undici Agent (Node's own copy, reached through the global dispatcher it installs)
  // whose connections go through the tunnel.
  function connect(opts, callback) {
    const host = opts.hostname;
    const port = Number(opts.port) || (opts.protocol === 'https:' ? 443 : 80);
    const secure = opts.protocol === 'https:';
    const servername = opts.servername || (net.isIP(host) ? undefined : host);
    const wrap = (socket) => {
      if (!secure) return callback(null, socket);
      const secured = tls.connect({ socket, servername, ALPNProtocols: ['http/1.1'] });
      secured.once('secureConnect', () => callback(null, secured));
      secured.once('error', callback);
    };
    if (bypassed(host)) {
      const socket = net.connect({ host, port });
      socket.once('connect', () => wrap(socket));
      socket.once('error', callback);
      return;
    }
    tunnel(host, port, (error, socket) => (error ? callback(error) : wrap(socket)));
  }

  const key = Symbol.for('undici.globalDispatcher.1');
  // Node loads its undici on the first fetch, and undici then installs its default Agent there: a data: URL
  // needs no connection, and the module is loaded before the call returns.
  if (typeof globalThis.fetch === 'function' && !globalThis[key]) globalThis.fetch('data:,').catch(() => {});
  const current = globalThis[key];
  if (current && typeof current.constructor === 'function') {
    globalThis[key] = new current.constructor({ connect });
  } else {
    process.emitWarning('tapgate: this Node has no fetch dispatcher to replace; fetch is not proxied');
  }

  // The https module (node-fetch, got, older SDKs): its global agent tunnels too.
  class TunnellingAgent extends https.Agent {
    createConnection(options, callback) {
      if (bypassed(options.host || 'localhost')) return super.createConnection(options, callback);
      tunnel(options.host, options.port || 443, (error, socket) => {
        if (error) return callback(error);
        const servername = options.servername || (net.isIP(options.host) ? undefined : options.host);
        callback(null, tls.connect({ ...options, socket, servername }));
      });
    }
  }
  https.globalAgent = new TunnellingAgent({ keepAlive: true });
}

if (!nativeEnvProxy()) {
  const proxy = proxyFromEnv();
  if (proxy) install(proxy);
}
