//! `/docs`: a readable API reference rendered on the server from the OpenAPI document the code
//! generates, plus the error-code table. One self-contained HTML page: no scripts, no fonts, no
//! CDN, so it works offline and under a strict Content-Security-Policy.

use serde_json::Value;

use crate::error::Code;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn schema_link(schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{0}\"><code>{0}</code></a>", esc(name));
    }
    match schema.get("type") {
        Some(Value::String(t)) if t == "array" => {
            format!(
                "array of {}",
                schema.get("items").map(schema_link).unwrap_or_default()
            )
        }
        Some(t) => format!("<code>{}</code>", esc(&t.to_string().replace('"', ""))),
        None => "<code>object</code>".into(),
    }
}

/// Renders the page. `doc` is the serialized OpenAPI document.
pub fn render(doc: &Value) -> String {
    let mut toc = String::new();
    let mut body = String::new();
    let title = doc
        .pointer("/info/title")
        .and_then(Value::as_str)
        .unwrap_or("API");
    let version = doc
        .pointer("/info/version")
        .and_then(Value::as_str)
        .unwrap_or("");
    let intro = doc
        .pointer("/info/description")
        .and_then(Value::as_str)
        .unwrap_or("");

    let mut by_tag: std::collections::BTreeMap<String, Vec<(String, String, &Value)>> =
        Default::default();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for (path, item) in paths {
            for method in METHODS {
                if let Some(op) = item.get(method) {
                    let tag = op
                        .pointer("/tags/0")
                        .and_then(Value::as_str)
                        .unwrap_or("other")
                        .to_owned();
                    by_tag
                        .entry(tag)
                        .or_default()
                        .push((method.to_owned(), path.clone(), op));
                }
            }
        }
    }
    for (tag, ops) in &by_tag {
        toc.push_str(&format!("<li><a href=\"#tag-{0}\">{0}</a></li>", esc(tag)));
        body.push_str(&format!("<h2 id=\"tag-{0}\">{0}</h2>", esc(tag)));
        for (method, path, op) in ops {
            let summary = op.get("summary").and_then(Value::as_str).unwrap_or("");
            let description = op.get("description").and_then(Value::as_str).unwrap_or("");
            let secured = op.get("security").is_some();
            body.push_str(&format!(
                "<section class=\"op\"><h3><span class=\"m {m}\">{M}</span> <code>{p}</code>{lock}</h3><p>{s}</p>",
                m = method,
                M = method.to_uppercase(),
                p = esc(path),
                lock = if secured { " <small>🔒 bearer token</small>" } else { "" },
                s = esc(summary),
            ));
            if !description.is_empty() {
                body.push_str(&format!("<p>{}</p>", esc(description)));
            }
            if let Some(params) = op.get("parameters").and_then(Value::as_array) {
                body.push_str(
                    "<table><tr><th>parameter</th><th>in</th><th>type</th><th></th></tr>",
                );
                for p in params {
                    body.push_str(&format!(
                        "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(p.get("name").and_then(Value::as_str).unwrap_or("")),
                        if p.get("required").and_then(Value::as_bool).unwrap_or(false) {
                            " *"
                        } else {
                            ""
                        },
                        esc(p.get("in").and_then(Value::as_str).unwrap_or("")),
                        p.get("schema").map(schema_link).unwrap_or_default(),
                        esc(p.get("description").and_then(Value::as_str).unwrap_or("")),
                    ));
                }
                body.push_str("</table>");
            }
            if let Some(schema) = op.pointer("/requestBody/content/application~1json/schema") {
                body.push_str(&format!("<p><b>Body</b>: {}</p>", schema_link(schema)));
            }
            if let Some(responses) = op.get("responses").and_then(Value::as_object) {
                body.push_str("<ul class=\"res\">");
                for (status, r) in responses {
                    let schema = r
                        .get("content")
                        .and_then(Value::as_object)
                        .and_then(|c| c.values().next())
                        .and_then(|c| c.get("schema"))
                        .map(schema_link)
                        .unwrap_or_default();
                    let d = r.get("description").and_then(Value::as_str).unwrap_or("");
                    body.push_str(&format!(
                        "<li><b>{}</b> {} {}</li>",
                        esc(status),
                        schema,
                        esc(d)
                    ));
                }
                body.push_str("</ul>");
            }
            body.push_str("</section>");
        }
    }

    toc.push_str(
        "<li><a href=\"#errors\">error codes</a></li><li><a href=\"#schemas\">schemas</a></li>",
    );
    body.push_str(
        "<h2 id=\"errors\">Error codes</h2><p>Every failure is an RFC 9457 problem document \
         (<code>application/problem+json</code>) with a stable <code>code</code>; a 422 lists the \
         failing fields in <code>errors</code>, a 429 carries <code>Retry-After</code>.</p>\
         <table><tr><th>code</th><th>status</th><th>meaning</th></tr>",
    );
    for c in Code::ALL {
        body.push_str(&format!(
            "<tr id=\"error-{0}\"><td><code>{0}</code></td><td>{1}</td><td>{2}</td></tr>",
            c.as_str(),
            c.status().as_u16(),
            esc(c.description())
        ));
    }
    body.push_str("</table><h2 id=\"schemas\">Schemas</h2>");
    if let Some(schemas) = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
    {
        for (name, schema) in schemas {
            let pretty = serde_json::to_string_pretty(schema).unwrap_or_default();
            body.push_str(&format!(
                "<h3 id=\"schema-{0}\">{0}</h3><pre>{1}</pre>",
                esc(name),
                esc(&pretty)
            ));
        }
    }

    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} — API reference</title><style>{css}</style></head><body>\
         <nav><h1>{t} <small>{v}</small></h1><ul>{toc}</ul><p><a href=\"/api/v1/openapi.json\">openapi.json</a></p></nav>\
         <main><p>{intro}</p>{body}</main></body></html>",
        t = esc(title),
        v = esc(version),
        intro = esc(intro),
        css = CSS,
    )
}

const CSS: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:0;display:flex;color:#1d2329}\
nav{width:230px;padding:1em;background:#f4f6f8;position:sticky;top:0;height:100vh;overflow:auto;flex:none}\
nav h1{font-size:1.2em}nav ul{padding-left:1em}main{padding:1em 2em;max-width:60em}\
.op{border-top:1px solid #dde2e6;padding:.4em 0}.op h3{font-size:1em;margin:.5em 0}\
.m{display:inline-block;min-width:4.2em;text-align:center;border-radius:3px;color:#fff;font-size:.8em;padding:.1em .3em}\
.get{background:#2f7d4f}.post{background:#2b62a8}.put{background:#8a5a00}.patch{background:#6c4aa8}.delete{background:#a83232}\
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #dde2e6;padding:.2em .5em;text-align:left;vertical-align:top}\
pre{background:#f4f6f8;padding:.6em;overflow:auto;font-size:.85em}code{font-size:.92em}.res{margin:.2em 0}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_operations_schemas_and_escapes() {
        let doc = serde_json::json!({
            "info": {"title": "T<", "version": "1"},
            "paths": {"/x": {"get": {"tags": ["t"], "summary": "s", "responses": {"200": {"description": "ok"}}}}},
            "components": {"schemas": {"S": {"type": "object"}}}
        });
        let html = render(&doc);
        assert!(html.contains("T&lt;"));
        assert!(html.contains("<code>/x</code>"));
        assert!(html.contains("schema-S"));
        assert!(html.contains("error-validation_failed"));
        assert!(!html.contains("<script"));
    }
}
