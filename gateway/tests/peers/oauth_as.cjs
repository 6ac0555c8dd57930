// An OAuth 2.0 authorization server for the token-exchange tests:
// oidc-provider (npm, OpenID certified) on 127.0.0.1:PORT, with
//   - client `agent` (client_credentials): the agent's access tokens, JWTs
//     for the resource `urn:sluice:gateway` carrying `tenant` and `roles`;
//   - client `sluice-gateway` (secret from GATEWAY_SECRET): the RFC 8693
//     token-exchange grant and the jwt-bearer (on-behalf-of) grant,
//     registered through oidc-provider's extension API. The subject token
//     must be an access token this server issued for the gateway; the
//     answer is a JWT for the requested audience with `act` naming the
//     gateway, valid TTL seconds (default 60).
//   - with CONTROL_REDIRECT, client `sluice-control` (authorization code)
//     for control's sign-in, through the development login form; ID tokens
//     carry `email`, `roles` and `tenants`.
// GET /stats says how many exchanges ran and what the last one asked.
// Prints `listening <issuer>` when ready.
// CommonJS, so NODE_PATH finds the packages; they are ES modules, loaded
// by their resolved paths.
(async () => {
const { Provider, errors } = await import(require.resolve('oidc-provider'));
const jose = await import(require.resolve('jose'));

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const gatewaySecret = process.env.GATEWAY_SECRET;
const ttl = Number(process.env.TTL || 60);
const GATEWAY_RESOURCE = 'urn:sluice:gateway';

const { privateKey, publicKey } = await jose.generateKeyPair('RS256', { extractable: true });
const privateJwk = { ...(await jose.exportJWK(privateKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
const publicJwk = { ...(await jose.exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
const ownKeys = jose.createLocalJWKSet({ keys: [publicJwk] });

const stats = { exchanges: 0, refused: 0, last: null };

const provider = new Provider(issuer, {
  jwks: { keys: [privateJwk] },
  scopes: ['openid', 'email', 'profile', 'mcp'],
  clients: [
    {
      client_id: 'agent',
      client_secret: 'agent-secret',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      scope: 'mcp',
    },
    {
      client_id: 'sluice-gateway',
      client_secret: gatewaySecret,
      grant_types: [
        'urn:ietf:params:oauth:grant-type:token-exchange',
        'urn:ietf:params:oauth:grant-type:jwt-bearer',
      ],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: process.env.GATEWAY_AUTH || 'client_secret_basic',
    },
    // Control's sign-in (OpenID Connect, code + PKCE), when asked for.
    ...(process.env.CONTROL_REDIRECT
      ? [{
        client_id: 'sluice-control',
        client_secret: 'control-secret',
        grant_types: ['authorization_code'],
        response_types: ['code'],
        redirect_uris: [process.env.CONTROL_REDIRECT],
      }]
      : []),
  ],
  // People for control's sign-in: any login (the development login form),
  // with roles by name.
  findAccount: (ctx, id) => ({
    accountId: id,
    claims: () => ({
      sub: id,
      email: `${id}@example.test`,
      roles: id === 'olga' ? ['finance'] : ['viewer'],
      tenants: ['acme'],
    }),
  }),
  claims: { openid: ['sub'], email: ['email'], profile: ['roles', 'tenants'] },
  conformIdTokenClaims: false,
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => GATEWAY_RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'mcp',
        audience: GATEWAY_RESOURCE,
        accessTokenFormat: 'jwt',
        accessTokenTTL: 600,
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  extraTokenClaims: () => ({ tenant: 'acme', roles: ['agent'] }),
});

/** Mint the exchanged token for `subject` (a verified access token). */
async function exchange(ctx, subjectToken, params) {
  let subject;
  try {
    ({ payload: subject } = await jose.jwtVerify(subjectToken, ownKeys, {
      issuer,
      audience: GATEWAY_RESOURCE,
    }));
  } catch {
    stats.refused += 1;
    throw new errors.InvalidGrant('the subject token is not valid');
  }
  if (process.env.REFUSE_SUBJECT && subject.sub === process.env.REFUSE_SUBJECT) {
    stats.refused += 1;
    throw new errors.InvalidGrant('this subject may not be exchanged');
  }
  stats.exchanges += 1;
  stats.last = { ...params, client: ctx.oidc.client.clientId };
  const audience = params.audience || params.resource || 'urn:unknown';
  const token = await new jose.SignJWT({
    scope: params.scope || '',
    client_id: ctx.oidc.client.clientId,
    act: { sub: ctx.oidc.client.clientId },
    tenant: subject.tenant,
  })
    .setProtectedHeader({ alg: 'RS256', kid: 'k1', typ: 'at+jwt' })
    .setIssuer(issuer)
    .setSubject(subject.sub)
    .setAudience(audience)
    .setIssuedAt()
    .setJti(require('node:crypto').randomUUID())
    .setExpirationTime(`${ttl}s`)
    .sign(privateKey);
  ctx.body = {
    access_token: token,
    issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    token_type: 'Bearer',
    expires_in: ttl,
  };
}

provider.registerGrantType(
  'urn:ietf:params:oauth:grant-type:token-exchange',
  async (ctx) => {
    const p = ctx.oidc.params;
    if (p.subject_token_type !== 'urn:ietf:params:oauth:token-type:access_token') {
      throw new errors.InvalidRequest('unsupported subject_token_type');
    }
    await exchange(ctx, p.subject_token, {
      grant: 'token-exchange',
      audience: p.audience,
      resource: p.resource,
      scope: p.scope,
      requested_token_type: p.requested_token_type,
    });
  },
  ['subject_token', 'subject_token_type', 'audience', 'resource', 'scope', 'requested_token_type'],
);

provider.registerGrantType(
  'urn:ietf:params:oauth:grant-type:jwt-bearer',
  async (ctx) => {
    const p = ctx.oidc.params;
    if (p.requested_token_use !== 'on_behalf_of') {
      throw new errors.InvalidRequest('requested_token_use must be on_behalf_of');
    }
    await exchange(ctx, p.assertion, { grant: 'jwt-bearer', scope: p.scope, audience: p.scope });
  },
  ['assertion', 'requested_token_use', 'scope'],
);

provider.use(async (ctx, next) => {
  if (ctx.path === '/stats') {
    ctx.body = stats;
    return;
  }
  await next();
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
})();
