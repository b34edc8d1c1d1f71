//! People sign in to the dashboard with their tenant's identity provider: a real OpenLDAP
//! `slapd` (LDAPS and StartTLS with the test's own CA) and the npm `oidc-provider` (a
//! certified OpenID provider, driven through headless Chromium and by hand), against the
//! real control-plane binary.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tether_tests::harness::oidc::{OidcProvider, free_port, sign_in_through};
use tether_tests::harness::slapd::{Person, SUFFIX, Slapd};
use tether_tests::harness::web::{WebClient, form_of};
use tether_tests::harness::webdriver::Browser;
use tether_tests::harness::{ControlPlaneOptions, ControlPlaneProc, TenantFixture, init};

/// The LDAP provider of a tenant, on `url`.
fn ldap_provider(url: &str, start_tls: bool, ca_pem: &str) -> Value {
    json!({
        "kind": "ldap",
        "url": url,
        "start_tls": start_tls,
        "ca_pem": ca_pem,
        "user_dn_template": format!("uid={{username}},ou=people,{SUFFIX}"),
        "group_base_dn": format!("ou=groups,{SUFFIX}"),
        "group_filter": "(member={user_dn})",
        "role_mapping": {"analysts": "viewer", "tether-admins": "admin"},
    })
}

/// Signs in with the LDAP form of `/ui/login/{tenant}`; the status and page.
async fn ldap_sign_in(
    c: &mut WebClient,
    base: &str,
    tenant: &str,
    user: &str,
    pw: &str,
) -> (StatusCode, String) {
    let page = c.get(&format!("{base}/ui/login/{tenant}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let (action, mut fields) = form_of(&page.url, &page.body);
    fields.push(("username".into(), user.into()));
    fields.push(("password".into(), pw.into()));
    let a = c.post(&action, &fields).await;
    (a.status, a.body)
}

async fn audit(api: &tether_tests::harness::Api) -> Vec<Value> {
    let (s, v) = api.get("/audit-log?action=sign-in&limit=100").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["entries"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_people_sign_in_with_the_role_of_their_groups() {
    init();
    let slapd = Slapd::start(&[
        Person {
            uid: "alice",
            password: "alice-pw",
            groups: &["analysts"],
        },
        Person {
            uid: "bob",
            password: "bob-pw",
            groups: &["tether-admins", "analysts"],
        },
        Person {
            uid: "carol",
            password: "carol-pw",
            groups: &["sales"],
        },
    ])
    .await;
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    let other = TenantFixture::create(&api, "globex").await;
    let admin = api.as_token(&fx.admin_token);
    let base = format!("http://{}", cp.http);
    let idp = format!("/tenants/{}/identity-provider", fx.tenant_id);

    // Bad input: a clear 400 naming the field, nothing stored.
    for (bad, field) in [
        (ldap_provider(&slapd.ldap_url, false, &slapd.ca_pem), "url"),
        (
            ldap_provider("ldaps://127.0.0.1:1", false, "not a certificate"),
            "ca_pem",
        ),
        (
            {
                let mut v = ldap_provider(&slapd.ldaps_url, false, &slapd.ca_pem);
                v["user_dn_template"] = json!("uid=alice");
                v
            },
            "user_dn_template",
        ),
        (
            {
                let mut v = ldap_provider(&slapd.ldaps_url, false, &slapd.ca_pem);
                v["role_mapping"] = json!({"analysts": "platform_admin"});
                v
            },
            "role_mapping.analysts",
        ),
    ] {
        let (s, v) = admin.put(&idp, &bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"]["field"], field, "{v}");
    }
    assert_eq!(admin.get(&idp).await.0, StatusCode::NOT_FOUND);
    // Another tenant's admin cannot see or set it.
    let (s, _) = api
        .as_token(&other.admin_token)
        .put(&idp, &ldap_provider(&slapd.ldaps_url, false, &slapd.ca_pem))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let shown = admin
        .ok_put(&idp, &ldap_provider(&slapd.ldaps_url, false, &slapd.ca_pem))
        .await;
    assert_eq!(shown["kind"], "ldap");
    assert_eq!(shown["bind_password_set"], false);
    assert_eq!(admin.ok_get(&idp).await, shown);

    // alice: an analyst, so a viewer.
    let mut alice = WebClient::new();
    let (s, page) = ldap_sign_in(&mut alice, &base, "acme", "alice", "alice-pw").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let home = alice.follow(&format!("{base}/"), None).await;
    assert!(home.body.contains("alice via ldap"), "{}", home.body);
    assert!(home.body.contains("data-role=\"viewer\""), "{}", home.body);
    // A viewer: no audit log; never another tenant.
    assert_eq!(
        alice.get(&format!("{base}/ui/audit")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        alice
            .get(&format!("{base}/ui/tenants/{}", other.tenant_id))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // bob: an admin (the highest of his groups).
    let mut bob = WebClient::new();
    let (s, _) = ldap_sign_in(&mut bob, &base, "acme", "bob", "bob-pw").await;
    assert_eq!(s, StatusCode::OK);
    let me = bob.get(&format!("{base}/ui/me")).await;
    assert!(
        me.body.contains("bob via ldap") && me.body.contains(">admin<"),
        "{}",
        me.body
    );

    // Wrong and empty passwords, an unknown user, someone in no mapped group.
    for (user, pw, status, says) in [
        (
            "alice",
            "wrong",
            StatusCode::UNAUTHORIZED,
            "Wrong user name or password",
        ),
        (
            "alice",
            "",
            StatusCode::UNAUTHORIZED,
            "Wrong user name or password",
        ),
        (
            "mallory",
            "x",
            StatusCode::UNAUTHORIZED,
            "Wrong user name or password",
        ),
        (
            "carol",
            "carol-pw",
            StatusCode::FORBIDDEN,
            "not in any group",
        ),
    ] {
        let mut c = WebClient::new();
        let (s, page) = ldap_sign_in(&mut c, &base, "acme", user, pw).await;
        assert_eq!(s, status, "{user}: {page}");
        assert!(page.contains(says), "{user}: {page}");
        assert!(
            c.cookie(&cp.http, "tether_session").is_none(),
            "{user} got a session"
        );
    }

    // The users list: who, how, role, last sign-in.
    let users = admin
        .ok_get(&format!("/tenants/{}/users", fx.tenant_id))
        .await;
    let names: Vec<(&str, &str, &str)> = users["users"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| {
            (
                u["name"].as_str().unwrap_or(""),
                u["via"].as_str().unwrap_or(""),
                u["role"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![("alice", "ldap", "viewer"), ("bob", "ldap", "admin")]
    );
    assert!(
        users["users"][0]["last_sign_in_at"]
            .as_str()
            .is_some_and(|t| t.starts_with("20"))
    );
    let (s, _) = api
        .as_token(&other.admin_token)
        .get(&format!("/tenants/{}/users", fx.tenant_id))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Every sign-in and refusal is audited, naming the person.
    let entries = audit(&admin).await;
    let of = |user: &str, status: u64| {
        entries
            .iter()
            .filter(|e| e["user"] == user && e["status"] == status)
            .count()
    };
    assert_eq!(of("alice via ldap", 200), 1, "{entries:#?}");
    assert_eq!(of("bob via ldap", 200), 1);
    assert_eq!(of("alice via ldap", 401), 2);
    assert_eq!(of("carol via ldap", 403), 1);
    // Mutating calls through the dashboard name the person too.
    let csrf = tether_tests::harness::web::form_of(&me.url, &me.body).1;
    let mut form = csrf.clone();
    form.push(("role".into(), "operator".into()));
    form.push(("days".into(), "7".into()));
    let minted = bob.post(&format!("{base}/ui/me/tokens"), &form).await;
    assert_eq!(minted.status, StatusCode::OK, "{}", minted.body);
    let token = minted
        .body
        .split("copy it now): ")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .expect("the new token on the page")
        .to_owned();
    // The personal token works with its role, names bob, and cannot exceed his role.
    let personal = api.as_token(&token);
    let (s, _) = personal
        .get(&format!("/tenants/{}/users", fx.tenant_id))
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "an operator token may not list users"
    );
    let (s, v) = personal
        .get(&format!("/compute-planes/{}/clusters", fx.cp_id))
        .await;
    assert_eq!(s, StatusCode::OK, "an operator token reads clusters: {v}");
    let (s, _) = personal
        .post(
            &format!("/tenants/{}/tokens", fx.tenant_id),
            &json!({"role": "admin"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, log) = admin.get("/audit-log?limit=20").await;
    assert!(
        log["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["user"] == "bob via ldap" && e["action"] == "POST /ui/me/tokens"),
        "{log}"
    );

    // A personal token is for the API, not for a dashboard session of its own.
    let mut t = WebClient::new();
    let login = t.get(&format!("{base}/login")).await;
    let (action, mut fields) = form_of(&login.url, &login.body);
    fields.push(("token".into(), token.clone()));
    assert_eq!(
        t.post(&action, &fields).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Removed from the group: the next sign-in is refused, and the session she still had
    // ends with it.
    assert_eq!(
        alice.get(&format!("{base}/ui/me")).await.status,
        StatusCode::OK
    );
    slapd.remove_member("analysts", "alice");
    let mut again = WebClient::new();
    let (s, page) = ldap_sign_in(&mut again, &base, "acme", "alice", "alice-pw").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{page}");
    assert_eq!(
        alice.get(&format!("{base}/ui/me")).await.status,
        StatusCode::SEE_OTHER
    );

    // StartTLS on the plain port works the same.
    admin
        .ok_put(&idp, &ldap_provider(&slapd.ldap_url, true, &slapd.ca_pem))
        .await;
    let mut c = WebClient::new();
    assert_eq!(
        ldap_sign_in(&mut c, &base, "acme", "bob", "bob-pw").await.0,
        StatusCode::OK
    );
    // A CA that did not sign the directory's certificate: refused, clearly.
    let wrong_ca = Slapd::start(&[]).await;
    admin
        .ok_put(
            &idp,
            &ldap_provider(&slapd.ldaps_url, false, &wrong_ca.ca_pem),
        )
        .await;
    let (s, page) = ldap_sign_in(&mut WebClient::new(), &base, "acme", "bob", "bob-pw").await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{page}");
    assert!(page.contains("cannot be reached"), "{page}");
    drop(wrong_ca);

    // The directory down, and one that accepts connections but never answers: a clear
    // error, bounded (the LDAP timeout is 5 s; the client here gives up after 30 s).
    admin
        .ok_put(&idp, &ldap_provider(&slapd.ldaps_url, false, &slapd.ca_pem))
        .await;
    slapd.stop();
    let (s, page) = ldap_sign_in(&mut WebClient::new(), &base, "acme", "bob", "bob-pw").await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{page}");
    assert!(page.contains("cannot be reached right now"), "{page}");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_url = format!("ldaps://{}", silent.local_addr().expect("addr"));
    let _held = std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming().take(4).flatten() {
            held.push(c);
        }
        std::thread::sleep(Duration::from_secs(60));
    });
    admin
        .ok_put(&idp, &ldap_provider(&silent_url, false, &slapd.ca_pem))
        .await;
    let (s, page) = tokio::time::timeout(
        Duration::from_secs(30),
        ldap_sign_in(&mut WebClient::new(), &base, "acme", "bob", "bob-pw"),
    )
    .await
    .expect("the sign-in answers within its bound");
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{page}");

    // Removing the provider ends its people's sessions at once.
    assert_eq!(admin.delete(&idp).await.0, StatusCode::NO_CONTENT);
    assert_eq!(
        bob.get(&format!("{base}/ui/me")).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(personal.get("/tenants").await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_people_sign_in_through_their_provider_and_forgeries_fail() {
    init();
    let http_port = free_port();
    let base = format!("http://127.0.0.1:{http_port}");
    let callback = format!("{base}/ui/oidc/callback/acme");
    let accounts = json!({
        "alice": {"email": "alice@example.com", "groups": ["analysts"]},
        "erin": {"email": "erin@example.com", "groups": ["tether-admins"]},
        "dave": {"email": "dave@example.com", "groups": ["sales"]},
    });
    let mut idp = OidcProvider::start("tether", "client-secret-0123", &callback, accounts).await;
    // Without the flag a tenant may not point the control plane at a loopback provider.
    let strict = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let sfx = TenantFixture::create(&strict.api(), "acme").await;
    let (s, v) = strict
        .api()
        .as_token(&sfx.admin_token)
        .put(
            &format!("/tenants/{}/identity-provider", sfx.tenant_id),
            &json!({"kind": "oidc", "issuer": idp.issuer, "client_id": "tether",
                "client_secret": "x", "role_mapping": {"analysts": "viewer"}}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("issuer"))
    );
    drop(strict);
    let cp = ControlPlaneProc::start(ControlPlaneOptions {
        http_listen: format!("127.0.0.1:{http_port}"),
        extra_args: vec!["--allow-loopback-identity-providers".into()],
        ..Default::default()
    })
    .await;
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    let other = TenantFixture::create(&api, "globex").await;
    let admin = api.as_token(&fx.admin_token);
    let path = format!("/tenants/{}/identity-provider", fx.tenant_id);
    let config = json!({"kind": "oidc", "issuer": idp.issuer, "client_id": "tether",
        "client_secret": "client-secret-0123", "role_mapping": {"analysts": "viewer", "tether-admins": "admin"}});
    let (s, v) = admin
        .put(&path, &{
            let mut c = config.clone();
            c["issuer"] = json!("http://idp.example.com");
            c
        })
        .await;
    assert_eq!(
        (s, v["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("issuer"))
    );
    let shown = admin.ok_put(&path, &config).await;
    assert_eq!(shown["client_secret_set"], true);
    assert!(!shown.to_string().contains("client-secret-0123"), "{shown}");
    // The client secret is sealed at rest: not in the database file.
    let db = std::fs::read(cp.data_dir.join("tether.db")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&db).contains("client-secret-0123"));
    // Changing the mapping keeps the stored secret.
    let mut no_secret = config.clone();
    no_secret.as_object_mut().map(|o| o.remove("client_secret"));
    assert_eq!(
        admin.ok_put(&path, &no_secret).await["client_secret_set"],
        true
    );
    // ...changing where it goes does not: the secret must be given again.
    let mut elsewhere = no_secret.clone();
    elsewhere["issuer"] = json!("https://attacker.example.com");
    let (s, v) = admin.put(&path, &elsewhere).await;
    assert_eq!(
        (s, v["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("client_secret")),
        "{v}"
    );
    let mut elsewhere = no_secret.clone();
    elsewhere["client_id"] = json!("other-client");
    assert_eq!(
        admin.put(&path, &elsewhere).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        admin.ok_get(&path).await["client_id"],
        "tether",
        "nothing changed"
    );

    // The whole redirect flow in Chromium.
    let b = Browser::start().await;
    // From the general sign-in page: the tenant's name leads to its own page.
    b.goto(&format!("{base}/login")).await;
    b.fill("#tenant", "acme").await;
    let go = b.must("#sso-tenant button[type=submit]").await;
    b.click(&go).await;
    let sso = b
        .wait_for(
            Duration::from_secs(10),
            "the tenant's sign-in page",
            || async { b.find("#sso").await },
        )
        .await;
    assert!(b.url().await.ends_with("/ui/login/acme"));
    b.click(&sso).await;
    b.wait_for(
        Duration::from_secs(20),
        "the provider's login form",
        || async { b.find("input[name=login]").await },
    )
    .await;
    b.fill("input[name=login]", "alice").await;
    b.fill("input[name=password]", "any").await;
    let submit = b.must("button[type=submit]").await;
    b.click(&submit).await;
    b.wait_for(Duration::from_secs(20), "the consent form", || async {
        let src = b.source().await;
        src.contains("name=\"prompt\" value=\"consent\"")
            .then_some(())
    })
    .await;
    let submit = b.must("button[type=submit]").await;
    b.click(&submit).await;
    let who = b
        .wait_for(
            Duration::from_secs(20),
            "the dashboard, signed in",
            || async {
                match b.find("a.user").await {
                    Some(e) => Some(b.text(&e).await),
                    None => None,
                }
            },
        )
        .await;
    assert_eq!(who, "alice@example.com via oidc");
    assert_eq!(b.text_of("span.role").await, "viewer");
    drop(b);

    // By hand: a full sign-in, then the same callback again (a replayed state and code).
    let mut c = WebClient::new();
    let back = sign_in_through(&mut c, &format!("{base}/ui/login/acme"), "erin", &callback).await;
    let ok = c.get(&back).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert!(c.cookie(&cp.http, "tether_session").is_some());
    let me = c.get(&format!("{base}/ui/me")).await;
    assert!(
        me.body.contains("erin@example.com via oidc") && me.body.contains(">admin<"),
        "{}",
        me.body
    );
    let replay = c.get(&back).await;
    assert_eq!(replay.status, StatusCode::FORBIDDEN, "{}", replay.body);
    // The old code with a fresh state of this browser: the provider refuses the used code.
    let mut c2 = WebClient::new();
    let fresh = sign_in_through(&mut c2, &format!("{base}/ui/login/acme"), "erin", &callback).await;
    let state = fresh
        .split("state=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .unwrap_or_default()
        .to_owned();
    let old_code = back
        .split("code=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .unwrap_or_default()
        .to_owned();
    let reused = c2
        .get(&format!("{callback}?code={old_code}&state={state}"))
        .await;
    assert_eq!(reused.status, StatusCode::UNAUTHORIZED, "{}", reused.body);
    assert!(c2.cookie(&cp.http, "tether_session").is_none());

    // A state started for one tenant cannot finish at another's callback (IdP mix-up).
    let mut mixed = WebClient::new();
    let acme_back = sign_in_through(
        &mut mixed,
        &format!("{base}/ui/login/acme"),
        "erin",
        &callback,
    )
    .await;
    let at_globex = acme_back.replace("/ui/oidc/callback/acme", "/ui/oidc/callback/globex");
    assert_eq!(mixed.get(&at_globex).await.status, StatusCode::FORBIDDEN);
    assert!(mixed.cookie(&cp.http, "tether_session").is_none());
    // A sign-in cannot be started by another site (no form token: login CSRF).
    let forged_start = WebClient::new()
        .post(&format!("{base}/ui/oidc/start/acme"), &[])
        .await;
    assert_eq!(forged_start.status, StatusCode::FORBIDDEN);

    // A wrong state: another browser's, or none.
    let mut victim = WebClient::new();
    let theirs = sign_in_through(
        &mut victim,
        &format!("{base}/ui/login/acme"),
        "erin",
        &callback,
    )
    .await;
    let mut attacker = WebClient::new();
    let forged = attacker.get(&theirs).await;
    assert_eq!(
        forged.status,
        StatusCode::FORBIDDEN,
        "login CSRF: {}",
        forged.body
    );
    assert!(attacker.cookie(&cp.http, "tether_session").is_none());
    // ...and the victim's own sign-in still works afterwards only once.
    assert_eq!(victim.get(&theirs).await.status, StatusCode::OK);

    // Someone in no mapped group: refused, with a page that says why.
    let mut d = WebClient::new();
    let back = sign_in_through(&mut d, &format!("{base}/ui/login/acme"), "dave", &callback).await;
    let refused = d.get(&back).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused.body.contains("not in any group"),
        "{}",
        refused.body
    );

    // A tampered ID token (payload changed after signing) and an expired one.
    for (mode, says) in [("tamper", "did not verify"), ("expired", "did not verify")] {
        idp.set_mode(mode).await;
        let mut m = WebClient::new();
        let back =
            sign_in_through(&mut m, &format!("{base}/ui/login/acme"), "alice", &callback).await;
        let a = m.get(&back).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{mode}: {}", a.body);
        assert!(a.body.contains(says), "{mode}: {}", a.body);
        assert!(m.cookie(&cp.http, "tether_session").is_none(), "{mode}");
    }
    idp.set_mode("normal").await;

    // The provider restarts with new signing keys: the next sign-in follows them.
    idp.restart().await;
    let mut r = WebClient::new();
    let back = sign_in_through(&mut r, &format!("{base}/ui/login/acme"), "alice", &callback).await;
    assert_eq!(r.get(&back).await.status, StatusCode::OK);
    // A signed-in person of acme never sees globex.
    assert_eq!(
        r.get(&format!("{base}/ui/tenants/{}", other.tenant_id))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // The provider down: a clear error, not a hang.
    drop(idp);
    let mut down = WebClient::new();
    let page = down.get(&format!("{base}/ui/login/acme")).await;
    let (action, fields) = form_of(&page.url, &page.body);
    let a = down.post(&action, &fields).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{}", a.body);
    assert!(a.body.contains("cannot be used right now"), "{}", a.body);

    // Users and the audit trail name people.
    let users = admin
        .ok_get(&format!("/tenants/{}/users", fx.tenant_id))
        .await;
    let names: Vec<&str> = users["users"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(names, vec!["alice@example.com", "erin@example.com"]);
    let entries = audit(&admin).await;
    let count = |user: &str, status: u64| {
        entries
            .iter()
            .filter(|e| e["user"] == user && e["status"] == status)
            .count()
    };
    assert_eq!(count("alice@example.com via oidc", 200), 2, "{entries:#?}");
    assert_eq!(count("erin@example.com via oidc", 200), 2);
    assert_eq!(count("dave@example.com via oidc", 403), 1);
    assert!(
        entries.iter().filter(|e| e["status"] == 401).count() >= 3,
        "used code, tampered, expired"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_admins_sign_in_through_the_vendors_own_provider() {
    init();
    let http_port = free_port();
    let base = format!("http://127.0.0.1:{http_port}");
    let callback = format!("{base}/ui/platform/oidc/callback");
    let accounts = json!({
        "ops": {"email": "ops@vendor.example", "groups": ["vendor-ops"]},
        "intern": {"email": "intern@vendor.example", "groups": ["vendor-interns"]},
    });
    // This provider puts the groups in the ID token itself.
    let idp = OidcProvider::start_with(
        "tether-platform",
        "platform-secret-1",
        &callback,
        accounts,
        true,
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "platform-secret-1\n").expect("write secret");
    let cp = ControlPlaneProc::start(ControlPlaneOptions {
        http_listen: format!("127.0.0.1:{http_port}"),
        extra_args: vec![
            "--platform-oidc-issuer".into(),
            idp.issuer.clone(),
            "--platform-oidc-client-id".into(),
            "tether-platform".into(),
            "--platform-oidc-client-secret-file".into(),
            secret_file.display().to_string(),
            "--platform-oidc-admin-group".into(),
            "vendor-ops".into(),
            "--public-url".into(),
            base.clone(),
            "--allow-loopback-identity-providers".into(),
        ],
        ..Default::default()
    })
    .await;
    let mut c = WebClient::new();
    let back = sign_in_through(
        &mut c,
        &format!("{base}/ui/platform/login"),
        "ops",
        &callback,
    )
    .await;
    assert_eq!(c.get(&back).await.status, StatusCode::OK);
    let tenants = c.get(&format!("{base}/ui/tenants")).await;
    assert_eq!(tenants.status, StatusCode::OK, "{}", tenants.body);
    assert!(
        tenants.body.contains("ops@vendor.example via oidc"),
        "{}",
        tenants.body
    );
    assert!(tenants.body.contains("data-role=\"platform_admin\""));
    // Not in the admin group: refused.
    let mut i = WebClient::new();
    let back = sign_in_through(
        &mut i,
        &format!("{base}/ui/platform/login"),
        "intern",
        &callback,
    )
    .await;
    let refused = i.get(&back).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    // A platform admin's audit entries name them.
    let (_, log) = cp.api().get("/audit-log?action=sign-in").await;
    let entries = log["entries"].as_array().cloned().unwrap_or_default();
    assert!(
        entries
            .iter()
            .any(|e| e["user"] == "ops@vendor.example via oidc"
                && e["status"] == 200
                && e["role"] == "platform_admin"),
        "{log}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["user"] == "intern@vendor.example via oidc" && e["status"] == 403),
        "{log}"
    );
    // A half-given configuration is a start-up error.
    let out = std::process::Command::new(tether_tests::harness::bin_path("tether-control-plane"))
        .args(["serve", "--platform-oidc-issuer", &idp.issuer])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--platform-oidc-client-id"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Guessing passwords: a few tries per account, then the form says to wait (429, with
/// `Retry-After`) without asking the directory, even for the right password; other accounts
/// are unaffected, and every refusal is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_is_slowed_per_account_and_audited() {
    init();
    let slapd = Slapd::start(&[
        Person {
            uid: "alice",
            password: "alice-pw",
            groups: &["analysts"],
        },
        Person {
            uid: "bob",
            password: "bob-pw",
            groups: &["analysts"],
        },
    ])
    .await;
    let cp = ControlPlaneProc::start(ControlPlaneOptions::default()).await;
    let api = cp.api();
    let fx = TenantFixture::create(&api, "acme").await;
    let admin = api.as_token(&fx.admin_token);
    let base = format!("http://{}", cp.http);
    admin
        .ok_put(
            &format!("/tenants/{}/identity-provider", fx.tenant_id),
            &ldap_provider(&slapd.ldaps_url, false, &slapd.ca_pem),
        )
        .await;
    for i in 0..tether_control_plane::identity::limits::USER_BURST {
        let (s, page) = ldap_sign_in(
            &mut WebClient::new(),
            &base,
            "acme",
            "alice",
            &format!("guess-{i}"),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "guess {i}: {page}");
    }
    let (s, page) = ldap_sign_in(&mut WebClient::new(), &base, "acme", "alice", "alice-pw").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{page}");
    assert!(
        page.contains("Too many sign-in attempts; try again in"),
        "{page}"
    );
    let (s, page) = ldap_sign_in(&mut WebClient::new(), &base, "acme", "bob", "bob-pw").await;
    assert_eq!(s, StatusCode::OK, "another account signs in: {page}");
    let entries = audit(&admin).await;
    let of = |user: &str, status: u64| {
        entries
            .iter()
            .filter(|e| e["user"] == user && e["status"] == status)
            .count()
    };
    assert_eq!(
        of("alice via ldap", 401),
        tether_control_plane::identity::limits::USER_BURST as usize
    );
    assert_eq!(of("alice via ldap", 429), 1, "{entries:#?}");
    assert_eq!(of("bob via ldap", 200), 1);
}
