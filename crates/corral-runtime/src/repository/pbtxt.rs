//! A reader for protobuf text format, the syntax of Triton's `config.pbtxt`: `name: value`
//! fields, `name { ... }` messages (the colon optional), `name: [a, b]` lists, `#` comments,
//! quoted strings, numbers and enum words, with `,` or `;` allowed between fields.
//!
//! It builds a schema-less tree ([`Message`]); the repository readers (the runtime's for
//! placement, the server's for Triton's serving fields) read the fields they know from it,
//! and a malformed file is reported with its line and column.

use std::fmt;

/// A field's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A quoted string, unescaped.
    Str(String),
    /// A number or an enum word, as written.
    Word(String),
    Message(Message),
    List(Vec<Value>),
}

/// Fields in file order; a repeated field appears once per occurrence.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    pub fields: Vec<(String, Value)>,
}

impl Message {
    /// Every value of `name`, lists flattened (`dims: [1, 2]` and two `dims:` lines read alike).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.fields.iter().filter(move |(n, _)| n == name).flat_map(|(_, v)| match v {
            Value::List(items) => items.iter().collect::<Vec<_>>(),
            other => vec![other],
        })
    }

    /// The last value of `name` (protobuf's rule for a repeated singular field).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The text of the last string, number or word `name`.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::text)
    }

    /// `parameters { key: "k" value { string_value: "v" } }`: the string value of key `key`.
    pub fn parameter(&self, key: &str) -> Option<&str> {
        self.all("parameters").find_map(|p| match p {
            Value::Message(p) if p.text("key") == Some(key) => match p.get("value") {
                Some(Value::Message(v)) => v.text("string_value"),
                _ => None,
            },
            _ => None,
        })
    }
}

/// A whole number written in a field; the error names the field.
pub fn number(text: &str, what: &str) -> Result<i64, String> {
    text.parse().map_err(|_| format!("{what}: `{text}` is not a whole number"))
}

impl Value {
    /// The text of a string, number or word.
    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::Word(s) => Some(s),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for ParseError {}

/// The deepest nesting of messages and lists read (Triton's configurations nest a few
/// levels); deeper text is refused before it can exhaust the stack.
pub const DEPTH_MAX: usize = 100;

/// The fields of Triton's `ModelConfig` (`model_config.proto` in triton-inference-server/common),
/// the names a `config.pbtxt` may hold at its top level.
pub const MODEL_CONFIG_FIELDS: &[&str] = &[
    "name",
    "platform",
    "backend",
    "runtime",
    "version_policy",
    "max_batch_size",
    "input",
    "output",
    "batch_input",
    "batch_output",
    "optimization",
    "dynamic_batching",
    "sequence_batching",
    "ensemble_scheduling",
    "instance_group",
    "default_model_filename",
    "cc_model_filenames",
    "metric_tags",
    "parameters",
    "model_warmup",
    "model_operations",
    "model_transaction_policy",
    "model_repository_agents",
    "response_cache",
    "model_metrics",
];

/// Top-level fields of `config` that Triton's `ModelConfig` does not have (a typo such as
/// `max_batch_sizee`), in file order, each once.
pub fn unknown_fields(config: &Message) -> Vec<&str> {
    let mut unknown: Vec<&str> = Vec::new();
    for (name, _) in &config.fields {
        if !MODEL_CONFIG_FIELDS.contains(&name.as_str()) && !unknown.contains(&name.as_str()) {
            unknown.push(name);
        }
    }
    unknown
}

/// Parses a whole text-format message.
pub fn parse(text: &str) -> Result<Message, ParseError> {
    let mut parser = Parser { chars: text.chars().collect(), at: 0, depth: 0 };
    let message = parser.fields(None)?;
    Ok(message)
}

struct Parser {
    chars: Vec<char>,
    at: usize,
    /// Messages and lists open at `at`.
    depth: usize,
}

impl Parser {
    fn error(&self, message: impl Into<String>) -> ParseError {
        let before = &self.chars[..self.at.min(self.chars.len())];
        let line = before.iter().filter(|&&c| c == '\n').count() + 1;
        let column = before.iter().rev().take_while(|&&c| c != '\n').count() + 1;
        ParseError { line, column, message: message.into() }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while let Some(c) = self.peek() {
            if c == '#' {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.at += 1;
                }
            } else if c.is_whitespace() {
                self.at += 1;
            } else {
                break;
            }
        }
    }

    /// Fields until `close` (or the end of the text at top level).
    fn fields(&mut self, close: Option<char>) -> Result<Message, ParseError> {
        let mut message = Message::default();
        loop {
            self.skip_space();
            match self.peek() {
                None if close.is_none() => return Ok(message),
                None => return Err(self.error(format!("missing `{}`", close.unwrap_or('}')))),
                Some(c) if Some(c) == close => {
                    self.at += 1;
                    return Ok(message);
                }
                Some(',' | ';') => self.at += 1,
                Some(_) => {
                    let name = self.word()?;
                    if name.is_empty() || !name.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_') {
                        return Err(self.error("expected a field name"));
                    }
                    self.skip_space();
                    let colon = self.peek() == Some(':');
                    if colon {
                        self.at += 1;
                        self.skip_space();
                    }
                    let value = match self.peek() {
                        Some('{' | '<') => self.message()?,
                        Some('[') => self.list()?,
                        _ if !colon => return Err(self.error(format!("expected `:` or `{{` after `{name}`"))),
                        _ => self.scalar()?,
                    };
                    message.fields.push((name, value));
                }
            }
        }
    }

    /// Enters one more level of nesting, refusing to pass [`DEPTH_MAX`].
    fn deeper(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > DEPTH_MAX {
            return Err(self.error(format!("nested deeper than {DEPTH_MAX} levels")));
        }
        Ok(())
    }

    fn message(&mut self) -> Result<Value, ParseError> {
        let close = if self.peek() == Some('<') { '>' } else { '}' };
        self.deeper()?;
        self.at += 1;
        let fields = self.fields(Some(close))?;
        self.depth -= 1;
        Ok(Value::Message(fields))
    }

    fn list(&mut self) -> Result<Value, ParseError> {
        self.deeper()?;
        self.at += 1;
        let mut items = Vec::new();
        loop {
            self.skip_space();
            match self.peek() {
                Some(']') => {
                    self.at += 1;
                    self.depth -= 1;
                    return Ok(Value::List(items));
                }
                Some(',') if !items.is_empty() => self.at += 1,
                Some('{' | '<') => items.push(self.message()?),
                Some(_) => items.push(self.scalar()?),
                None => return Err(self.error("missing `]`")),
            }
        }
    }

    fn scalar(&mut self) -> Result<Value, ParseError> {
        match self.peek() {
            Some(quote @ ('"' | '\'')) => self.string(quote),
            _ => {
                let word = self.word()?;
                if word.is_empty() {
                    return Err(self.error("expected a value"));
                }
                Ok(Value::Word(word))
            }
        }
    }

    fn word(&mut self) -> Result<String, ParseError> {
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '+' | '.')) {
            self.at += 1;
        }
        Ok(self.chars[start..self.at].iter().collect())
    }

    fn string(&mut self, quote: char) -> Result<Value, ParseError> {
        self.at += 1;
        let mut text = String::new();
        loop {
            match self.peek() {
                None | Some('\n') => return Err(self.error("unterminated string")),
                Some(c) if c == quote => {
                    self.at += 1;
                    return Ok(Value::Str(text));
                }
                Some('\\') => {
                    self.at += 1;
                    let escaped = match self.peek() {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some(c @ ('\\' | '"' | '\'')) => c,
                        _ => return Err(self.error("unknown escape in string")),
                    };
                    text.push(escaped);
                    self.at += 1;
                }
                Some(c) => {
                    text.push(c);
                    self.at += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_triton_config() {
        let text = r#"
            name: "resnet"   # the model
            platform: "onnxruntime_onnx"
            max_batch_size: 8
            input: [
              { name: "x", data_type: TYPE_FP32, dims: [ 3, 224, 224 ] }
            ]
            output { name: "y" data_type: TYPE_FP32 dims: [ -1 ] }
            instance_group [ { count: 2, kind: KIND_CPU } ]
            dynamic_batching { max_queue_delay_microseconds: 100 }
            parameters: { key: "corral.cores" value: { string_value: "2" } }
        "#;
        let config = parse(text).expect("parses");
        assert_eq!(config.get("name"), Some(&Value::Str("resnet".into())));
        assert_eq!(config.get("max_batch_size").and_then(Value::text), Some("8"));
        let Some(Value::Message(input)) = config.all("input").next() else { panic!("input") };
        let dims: Vec<&str> = input.all("dims").filter_map(Value::text).collect();
        assert_eq!(dims, ["3", "224", "224"]);
        let Some(Value::Message(output)) = config.get("output") else { panic!("output") };
        assert_eq!(output.all("dims").filter_map(Value::text).collect::<Vec<_>>(), ["-1"]);
        assert_eq!(config.all("instance_group").count(), 1);
    }

    #[test]
    fn errors_say_where() {
        assert_eq!(
            parse("name: \"x\"\nmax_batch_size 8").unwrap_err().to_string(),
            "line 2, column 16: expected `:` or `{` after `max_batch_size`"
        );
        assert_eq!(parse("input [ { name: \"x\" ").unwrap_err().to_string(), "line 1, column 21: missing `}`");
        assert_eq!(parse("name: \"x").unwrap_err().to_string(), "line 1, column 9: unterminated string");
    }

    #[test]
    fn nesting_past_the_limit_is_refused_and_unknown_fields_are_named() {
        let nested = |depth: usize| "a { ".repeat(depth) + &"} ".repeat(depth);
        assert!(parse(&nested(DEPTH_MAX)).is_ok());
        let err = parse(&nested(DEPTH_MAX + 1)).unwrap_err().to_string();
        assert_eq!(err, "line 1, column 403: nested deeper than 100 levels");
        let deep = "a <".repeat(1_000_000);
        assert!(parse(&deep).unwrap_err().to_string().ends_with("nested deeper than 100 levels"), "no stack overflow");
        let config =
            parse("name: \"m\"\nmax_batch_sizee: 8\nbackend: \"onnxruntime\"\nmax_batch_sizee: 9").expect("parses");
        assert_eq!(unknown_fields(&config), ["max_batch_sizee"]);
    }
}
