// Preloaded into peer servers from npm (`node -r loopback.cjs server.js`):
// a server that would listen on every interface listens on 127.0.0.1 only,
// so the suite never opens a port beyond loopback.
'use strict';
const net = require('net');
const original = net.Server.prototype.listen;
net.Server.prototype.listen = function listenOnLoopback(...args) {
  const [first, second] = args;
  const portOnly = typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first));
  if (portOnly && typeof second !== 'string') {
    args.splice(1, 0, '127.0.0.1');
  } else if (first !== null && typeof first === 'object' && first.host === undefined && first.path === undefined) {
    args[0] = Object.assign({}, first, { host: '127.0.0.1' });
  }
  return original.apply(this, args);
};
