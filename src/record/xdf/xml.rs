//! A small owned XML tree for XDF stream headers, footers and LSL stream descriptions.
//!
//! LSL's `<info>` documents are plain element trees (pugixml without attributes in practice);
//! attributes are kept anyway so that nothing a foreign writer put in a header is lost.

use std::fmt::Write as _;

use xml::reader::{EventReader, ParserConfig, XmlEvent};

/// One XML element: its name, attributes, text content (trimmed) and child elements.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct XmlElement {
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<XmlElement>,
}

impl XmlElement {
    /// An element with a name and nothing else.
    pub fn new(name: &str) -> Self {
        XmlElement {
            name: name.to_string(),
            ..Default::default()
        }
    }

    /// An element holding only text.
    pub fn with_text(name: &str, text: &str) -> Self {
        XmlElement {
            name: name.to_string(),
            text: text.to_string(),
            ..Default::default()
        }
    }

    /// Parses a document and returns its root element.
    pub fn parse(doc: &str) -> Result<XmlElement, String> {
        let config = ParserConfig::new().cdata_to_characters(true);
        let reader = EventReader::new_with_config(doc.as_bytes(), config);
        let mut stack: Vec<XmlElement> = Vec::new();
        for event in reader {
            match event.map_err(|e| e.to_string())? {
                XmlEvent::StartElement {
                    name, attributes, ..
                } => stack.push(XmlElement {
                    name: name.local_name,
                    attributes: attributes
                        .into_iter()
                        .map(|a| (a.name.local_name, a.value))
                        .collect(),
                    ..Default::default()
                }),
                XmlEvent::Characters(text) => {
                    if let Some(top) = stack.last_mut() {
                        top.text.push_str(&text);
                    }
                }
                XmlEvent::EndElement { .. } => {
                    let mut done = stack.pop().ok_or("unbalanced end tag")?;
                    done.text = done.text.trim().to_string();
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(done),
                        None => return Ok(done),
                    }
                }
                _ => {}
            }
        }
        Err("document has no root element".to_string())
    }

    /// The first child with this name.
    pub fn child(&self, name: &str) -> Option<&XmlElement> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The first child with this name, created (appended) if missing.
    pub fn child_mut_or_insert(&mut self, name: &str) -> &mut XmlElement {
        let idx = match self.children.iter().position(|c| c.name == name) {
            Some(i) => i,
            None => {
                self.children.push(XmlElement::new(name));
                self.children.len() - 1
            }
        };
        &mut self.children[idx]
    }

    /// The text of the first child with this name.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// All children with this name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a XmlElement> {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Serialises the element (without an XML declaration).
    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        self.write_into(&mut out);
        out
    }

    fn write_into(&self, out: &mut String) {
        out.push('<');
        out.push_str(&self.name);
        for (k, v) in &self.attributes {
            let _ = write!(out, " {}=\"{}\"", k, escape(v));
        }
        if self.text.is_empty() && self.children.is_empty() {
            out.push_str(" />");
            return;
        }
        out.push('>');
        out.push_str(&escape(&self.text));
        for c in &self.children {
            c.write_into(out);
        }
        let _ = write!(out, "</{}>", self.name);
    }
}

/// Escapes text for element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_round_trips() {
        let doc = "<?xml version=\"1.0\"?><info><name>A &amp; B</name><desc><channels>\
                   <channel><label>Fp1</label></channel><channel><label>Fp2</label></channel>\
                   </channels></desc><empty/></info>";
        let root = XmlElement::parse(doc).unwrap();
        assert_eq!(root.name, "info");
        assert_eq!(root.child_text("name"), Some("A & B"));
        let labels: Vec<_> = root
            .child("desc")
            .unwrap()
            .child("channels")
            .unwrap()
            .children_named("channel")
            .map(|c| c.child_text("label").unwrap())
            .collect();
        assert_eq!(labels, ["Fp1", "Fp2"]);
        assert_eq!(XmlElement::parse(&root.to_xml()).unwrap(), root);
    }

    #[test]
    fn rejects_broken_documents() {
        assert!(XmlElement::parse("<info><name>x</info>").is_err());
        assert!(XmlElement::parse("").is_err());
    }
}
