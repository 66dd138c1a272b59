//! Payout binding: the email code a worker proves its address with, and the payout addresses it
//! may bind (PayPal: an email; Solana: base58 of a 32-byte public key).

use serde::{Deserialize, Serialize};

use crate::domain::Email;
use crate::error::EngineError;

/// A code is good for 15 minutes…
pub const CODE_TTL_MS: i64 = 15 * 60 * 1000;
/// …and for 5 wrong tries, after which it is void.
pub const MAX_WRONG: u32 = 5;
/// A new code is sent at most once a minute.
pub const RESEND_MS: i64 = 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayoutMethod {
    Paypal,
    Solana,
}

impl PayoutMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutMethod::Paypal => "paypal",
            PayoutMethod::Solana => "solana",
        }
    }

    pub fn parse(s: &str) -> Option<PayoutMethod> {
        match s {
            "paypal" => Some(PayoutMethod::Paypal),
            "solana" => Some(PayoutMethod::Solana),
            _ => None,
        }
    }
}

/// The address as it is stored, or why it cannot be one.
pub fn check_address(method: PayoutMethod, address: &str) -> Result<String, EngineError> {
    match method {
        PayoutMethod::Paypal => Email::parse(address)
            .map(|e| e.as_str().to_string())
            .map_err(|_| {
                EngineError::validation_field("address", "a PayPal address is an email address")
            }),
        PayoutMethod::Solana => match base58_decode(address) {
            Some(bytes) if bytes.len() == 32 => Ok(address.to_string()),
            _ => Err(EngineError::validation_field(
                "address",
                "a Solana address is the base58 of a 32-byte public key",
            )),
        },
    }
}

/// Bitcoin's base58 alphabet (no 0, O, I, l), which Solana uses.
const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Decodes base58 (leading `1`s are zero bytes); None for a character outside the alphabet or a
/// text too long to be an address.
pub fn base58_decode(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    let mut bytes: Vec<u8> = Vec::with_capacity(s.len());
    for c in s.bytes() {
        let mut carry = ALPHABET.iter().position(|&a| a == c)? as u32;
        for b in bytes.iter_mut().rev() {
            carry += u32::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = s.bytes().take_while(|&c| c == b'1').count();
    let mut out = vec![0u8; zeros];
    out.extend(bytes.into_iter().skip_while(|&b| b == 0));
    Some(out)
}

/// A code as the store keeps it (only its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCode {
    pub email: String,
    pub code_hash: String,
    pub created_at_ms: i64,
    pub wrong: u32,
}

/// What a try at a code gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    Good,
    /// Wrong; this many tries are left.
    Wrong {
        left: u32,
    },
    /// Too many wrong tries: ask for a new code.
    Void,
    Expired,
}

/// Judges a try (`given_hash`, for `email`) against the stored code at `now_ms`.
pub fn check_code(stored: &StoredCode, email: &str, given_hash: &str, now_ms: i64) -> CodeCheck {
    if stored.wrong >= MAX_WRONG {
        return CodeCheck::Void;
    }
    if now_ms - stored.created_at_ms > CODE_TTL_MS {
        return CodeCheck::Expired;
    }
    // Hashes of equal length: comparing them leaks nothing about the code.
    if stored.email == email && stored.code_hash == given_hash {
        CodeCheck::Good
    } else {
        CodeCheck::Wrong {
            left: MAX_WRONG - stored.wrong - 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base58_decodes_known_addresses() {
        // The system program's address is 32 zero bytes.
        let zero = base58_decode("11111111111111111111111111111111").unwrap();
        assert_eq!(zero, vec![0u8; 32]);
        assert_eq!(base58_decode("2g").unwrap(), vec![0x61]); // "a"
        assert_eq!(base58_decode("1"), Some(vec![0]));
        assert!(base58_decode("0OIl").is_none());
        // A real Solana address (the SPL token program).
        let token = base58_decode("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA").unwrap();
        assert_eq!(token.len(), 32);
    }

    #[test]
    fn addresses_are_checked_by_method() {
        assert!(
            check_address(
                PayoutMethod::Solana,
                "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
            )
            .is_ok()
        );
        assert!(
            check_address(PayoutMethod::Solana, "2g").is_err(),
            "one byte"
        );
        assert!(check_address(PayoutMethod::Solana, "not base58 0").is_err());
        assert_eq!(
            check_address(PayoutMethod::Paypal, "Me@Example.com").unwrap(),
            "me@example.com"
        );
        assert!(check_address(PayoutMethod::Paypal, "nope").is_err());
    }

    #[test]
    fn codes_expire_and_run_out_of_tries() {
        let stored = StoredCode {
            email: "w@example.com".into(),
            code_hash: "h".into(),
            created_at_ms: 0,
            wrong: 0,
        };
        assert_eq!(
            check_code(&stored, "w@example.com", "h", 1),
            CodeCheck::Good
        );
        assert_eq!(
            check_code(&stored, "w@example.com", "x", 1),
            CodeCheck::Wrong { left: 4 }
        );
        assert_eq!(
            check_code(&stored, "other@example.com", "h", 1),
            CodeCheck::Wrong { left: 4 }
        );
        assert_eq!(
            check_code(&stored, "w@example.com", "h", CODE_TTL_MS + 1),
            CodeCheck::Expired
        );
        let spent = StoredCode {
            wrong: MAX_WRONG,
            ..stored
        };
        assert_eq!(check_code(&spent, "w@example.com", "h", 1), CodeCheck::Void);
    }
}
