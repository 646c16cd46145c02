//! The few HTML pages of the development authorization server (sign-in and consent, errors, the
//! token debugger): escaped text in a fixed shell, no script, framing forbidden.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Escapes text for an HTML text node or a double-quoted attribute value.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// No script, no framing (a consent page in a frame is clickjacking), forms only to this origin.
pub(crate) const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'";

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;background:#f3f4f6;color:#111827;margin:0}
main{max-width:34rem;margin:3rem auto;background:#fff;border-radius:12px;padding:2rem 2.25rem;\
box-shadow:0 1px 3px rgba(0,0,0,.12)}
h1{font-size:1.35rem;margin:0 0 .25rem}
h2{font-size:1rem;margin:1.2rem 0 .4rem}
.dev{background:#fef3c7;color:#92400e;border-radius:6px;padding:.4rem .7rem;font-size:.85rem;margin-bottom:1.2rem}
.muted{color:#6b7280;font-size:.9rem}
fieldset{border:1px solid #e5e7eb;border-radius:8px;margin:1rem 0;padding:.6rem 1rem}
legend{font-weight:600;padding:0 .3rem}
label{display:block;margin:.35rem 0}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem}
pre{background:#f9fafb;border:1px solid #e5e7eb;border-radius:6px;padding:.6rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
input[type=text],textarea{width:100%;box-sizing:border-box;padding:.45rem;border:1px solid #d1d5db;border-radius:6px;font:inherit}
textarea{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.8rem;word-break:break-all}
.buttons{display:flex;gap:.75rem;margin-top:1.2rem}
button{font:inherit;padding:.55rem 1.3rem;border-radius:6px;border:1px solid #d1d5db;background:#fff;cursor:pointer}
button.primary{background:#2563eb;border-color:#2563eb;color:#fff}
.ok{color:#047857;font-weight:600}.bad{color:#b91c1c;font-weight:600}
";

/// A whole page: `body` must already be escaped HTML.
pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body><main>\n\
         <div class=\"dev\">tower-bearer development authorization server: not for production</div>\n\
         {body}\n</main></body></html>\n",
        escape(title)
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// An error shown to the person in the browser (never redirected to the client).
pub(crate) fn error_page(status: StatusCode, error: &str, description: &str) -> Response {
    page(
        status,
        "Authorization error",
        &format!(
            "<h1>Authorization error</h1><p><code>{}</code></p><p>{}</p>\
             <p class=\"muted\">Nothing was sent to the client.</p>",
            escape(error),
            escape(description)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert_eq!(escape("plain é"), "plain é");
    }
}
