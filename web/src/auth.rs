//! Bearer-token extractors. A handler names the role it serves by its argument type; a missing or
//! unknown token is 401, a token of another role 403.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use clawjobs_actors::domain::{Principal, Role, UserId, WorkerId};
use clawjobs_actors::store::Who;

use crate::AppState;
use crate::error::ApiError;

/// The token of an `Authorization: Bearer` header.
pub(crate) fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
        .filter(|t| !t.is_empty())
}

async fn principal(req: HttpRequest, roles: &'static [Role]) -> Result<Principal, ApiError> {
    let token = bearer(&req)
        .ok_or_else(|| ApiError::unauthorized("an Authorization: Bearer token is required"))?;
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::from(clawjobs_actors::EngineError::internal("no app state")))?;
    check(state, &token, roles).await
}

/// Who holds `token`: 401 when nobody does, 403 when it is not of one of `roles`.
pub(crate) async fn check(
    state: &AppState,
    token: &str,
    roles: &[Role],
) -> Result<Principal, ApiError> {
    if token.is_empty() || token.len() > 256 {
        return Err(ApiError::unauthorized("unknown token"));
    }
    let p = state
        .engine
        .authenticate(token)
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown token"))?;
    if !roles.contains(&p.role) {
        let wanted: Vec<String> = roles.iter().map(|r| with_article(r.as_str())).collect();
        return Err(ApiError::forbidden(format!(
            "this needs {} token, not {} token",
            wanted.join(" or "),
            with_article(p.role.as_str())
        )));
    }
    if p.role == Role::Worker {
        state.engine.check_not_banned(&p.id)?;
    }
    Ok(p)
}

/// Where a request came from, for the audit log: the peer's address (this server is reached
/// directly; behind a proxy it is the proxy's) and the `User-Agent` header, cut to 256
/// characters. Never fails.
#[derive(Debug, Clone)]
pub struct Origin {
    ip: String,
    user_agent: String,
}

impl Origin {
    fn of(req: &HttpRequest) -> Origin {
        Origin {
            ip: req
                .peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default(),
            user_agent: req
                .headers()
                .get(actix_web::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
        }
    }

    /// `id` acting from here.
    pub fn actor(&self, id: &str) -> Who {
        Who::new(id, self.ip.as_str(), &self.user_agent)
    }
}

impl FromRequest for Origin {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Origin, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(Origin::of(req)))
    }
}

/// "an admin", "a buyer".
fn with_article(noun: &str) -> String {
    let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {noun}")
}

macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $roles:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Principal);

        impl FromRequest for $name {
            type Error = ApiError;
            type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

            fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
                let req = req.clone();
                Box::pin(async move { principal(req, $roles).await.map($name) })
            }
        }

        impl $name {
            pub fn id(&self) -> &str {
                &self.0.id
            }
        }
    };
}

role_extractor!(
    /// A buyer's token.
    Buyer, &[Role::Buyer]
);
role_extractor!(
    /// A worker's token.
    Worker, &[Role::Worker]
);
role_extractor!(
    /// An admin's token.
    Admin, &[Role::Admin]
);
role_extractor!(
    /// A buyer's or a worker's token: both have balances.
    Account, &[Role::Buyer, Role::Worker]
);

role_extractor!(
    /// Any valid token: a buyer's, a worker's or an admin's.
    Anyone, &[Role::Buyer, Role::Worker, Role::Admin]
);

impl Anyone {
    pub fn user_id(&self) -> UserId {
        UserId::from(self.id())
    }
}

impl Buyer {
    pub fn user_id(&self) -> UserId {
        UserId::from(self.id())
    }
}

impl Worker {
    pub fn worker_id(&self) -> WorkerId {
        WorkerId::from(self.id())
    }
}

impl Admin {
    pub fn user_id(&self) -> UserId {
        UserId::from(self.id())
    }
}
