//! The browser pages as HTTP sees them: served by the binary with a strict Content-Security-
//! Policy, no inline script, assets embedded and cacheable by version, prices from the live
//! config. (What they do in a browser is tests/browser, in Chromium.)

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

async fn page(app: &TestApp, path: &str) -> (reqwest::header::HeaderMap, String) {
    let res = app.call(Method::GET, path, None, None).await;
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    let headers = res.headers().clone();
    (headers, res.text().await.expect("body"))
}

#[tokio::test]
async fn pages_are_served_with_a_strict_policy_and_their_assets_embedded() {
    let app = spawn_app().await;
    for path in [
        "/",
        "/worker",
        "/admin",
        "/deposit/success?deposit_id=d_x",
        "/deposit/cancel",
    ] {
        let (h, body) = page(&app, path).await;
        assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
        let csp = h["content-security-policy"].to_str().unwrap();
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(part), "{path}: {csp}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        // Every script is a file of this origin: nothing inline, nothing from elsewhere.
        for tag in body.split("<script").skip(1) {
            let tag = &tag[..tag.find('>').unwrap()];
            assert!(
                tag.contains("src=\"/assets/"),
                "{path}: inline or foreign script {tag}"
            );
        }
        // Nothing is linked or loaded from elsewhere (an example address in a placeholder is
        // text, not a link).
        for attr in ["href=\"", "src=\"", "action=\""] {
            for scheme in ["http://", "https://", "//"] {
                assert!(
                    !body.contains(&format!("{attr}{scheme}")),
                    "{path} links elsewhere: {attr}{scheme}"
                );
            }
        }
        // Each asset the page names is served, with a long cache life at this version.
        for link in body.split("\"/assets/").skip(1) {
            let url = format!("/assets/{}", &link[..link.find('"').unwrap()]);
            let res = app.call(Method::GET, &url, None, None).await;
            assert_eq!(res.status(), StatusCode::OK, "{url}");
            assert!(
                res.headers()["cache-control"]
                    .to_str()
                    .unwrap()
                    .contains("immutable"),
                "{url}"
            );
        }
    }
    // An old version's URL is served but not kept; an unknown asset is the API's 404.
    let res = app
        .call(Method::GET, "/assets/buyer.js?v=old", None, None)
        .await;
    assert_eq!(res.headers()["cache-control"], "no-cache");
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let (s, v) = app.json(Method::GET, "/assets/nope.js", None, None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
}

#[tokio::test]
async fn the_landing_prices_follow_the_live_config() {
    let app = spawn_app().await;
    let (_, body) = page(&app, "/").await;
    assert!(
        body.contains("<td>research</td><td class=\"num\">50¢</td>"),
        "{body}"
    );
    assert!(body.contains("New accounts start with 50¢ of credit."));
    app.patch_config("pricing", json!({"research": {"base_cents": 125}}))
        .await;
    app.patch_config("signup", json!({"buyer_free_credit_cents": 75}))
        .await;
    let (_, body) = page(&app, "/").await;
    assert!(
        body.contains("<td>research</td><td class=\"num\">$1.25</td>"),
        "{body}"
    );
    assert!(body.contains("New accounts start with 75¢ of credit."));
}
