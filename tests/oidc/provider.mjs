// The OpenID provider the tests start: npm `oidc-provider` (a certified implementation),
// with its development login page (any password; the login name is the account id).
//
//   node provider.mjs CONFIG.json
//
// CONFIG: {"port", "clients": [{client_id, client_secret, redirect_uris}],
//          "accounts": {"alice": {"email", "groups": [...]}}}
//
// For the failure tests, `POST /__test/mode` with body `tamper` (the ID token's payload is
// altered after signing), `expired` (the ID token lives 1 s and the token answer is held
// 2.5 s) or `normal`.
import { readFileSync } from "node:fs";
import Provider from "oidc-provider";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const issuer = `http://127.0.0.1:${config.port}`;
let mode = "normal";

const provider = new Provider(issuer, {
  clients: config.clients.map((c) => ({
    ...c,
    grant_types: ["authorization_code"],
    response_types: ["code"],
    token_endpoint_auth_method: "client_secret_basic",
  })),
  pkce: { required: () => true },
  scopes: ["openid", "email", "profile"],
  claims: {
    email: ["email", "email_verified"],
    profile: ["preferred_username", "groups"],
  },
  // Groups come from userinfo (the provider's default once an access token is issued),
  // or, with "id_token_claims": true, in the ID token itself.
  conformIdTokenClaims: !config.id_token_claims,
  ttl: {
    IdToken: () => (mode === "expired" ? 1 : 3600),
  },
  findAccount: async (ctx, id) => {
    const a = config.accounts[id] || {};
    return {
      accountId: id,
      claims: async () => ({
        sub: id,
        email: a.email || `${id}@example.com`,
        email_verified: true,
        preferred_username: id,
        groups: a.groups || [],
      }),
    };
  },
});
provider.proxy = false;

provider.use(async (ctx, next) => {
  if (ctx.path === "/__test/mode" && ctx.method === "POST") {
    let body = "";
    for await (const chunk of ctx.req) body += chunk;
    mode = body.trim();
    ctx.body = `mode ${mode}\n`;
    return;
  }
  await next();
  if (ctx.path === "/token" && ctx.body && ctx.body.id_token) {
    if (mode === "tamper") {
      const [h, p, s] = ctx.body.id_token.split(".");
      const claims = JSON.parse(Buffer.from(p, "base64url").toString());
      claims.email = "mallory@example.com";
      claims.groups = ["tether-admins"];
      ctx.body.id_token = [h, Buffer.from(JSON.stringify(claims)).toString("base64url"), s].join(".");
    } else if (mode === "expired") {
      await new Promise((r) => setTimeout(r, 2500));
    }
  }
});

provider.listen(config.port, "127.0.0.1", () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
