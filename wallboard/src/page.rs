//! The one page: `web/index.html` with `web/style.css` and `web/app.js`
//! inlined, all compiled into the binary. Inlined because with `--token`
//! every request needs the token, and the sub-resources a page opened as
//! `/?token=...` loads would carry none. The Content-Security-Policy allows
//! exactly these two inline blocks (by hash) and nothing from elsewhere.

use base64::Engine;
use sha2::{Digest, Sha256};

const HTML: &str = include_str!("../web/index.html");
const CSS: &str = include_str!("../web/style.css");
const JS: &str = include_str!("../web/app.js");

pub struct Page {
    pub html: String,
    pub csp: String,
}

fn hash(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(s.as_bytes()))
}

impl Page {
    pub fn build() -> Page {
        let html = HTML
            .replacen("<style></style>", &format!("<style>{CSS}</style>"), 1)
            .replacen("<script></script>", &format!("<script>{JS}</script>"), 1);
        let csp = format!(
            "default-src 'none'; style-src 'sha256-{}'; script-src 'sha256-{}'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            hash(CSS),
            hash(JS)
        );
        Page { html, csp }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_holds_its_style_and_script_and_nothing_from_outside() {
        let p = Page::build();
        assert!(p.html.contains(CSS) && p.html.contains(JS));
        for outside in ["http://", "https://", "src=\"", "href=\"http"] {
            assert!(!p.html.contains(outside), "{outside} in the page");
        }
        assert!(p.csp.contains(&hash(JS)));
    }
}
