//! Protobuf text format read against a message's descriptor, as protobuf's C++ parser reads
//! it (`google/protobuf/text_format.cc`, `TextFormat::Parser` with its defaults, the parser
//! Triton reads `config.pbtxt` with): the same tokens (`io/tokenizer.cc`: `#` comments,
//! decimal, hex and octal integers, floats with an optional `f`, single- or double-quoted
//! strings with C escapes, adjacent strings joined), the same rules and the same words in its
//! errors, positions as `line:column` counted from 1 (a tab advances the column to the next
//! multiple of 8, as protobuf's tokenizer counts).
//!
//! The rules, each a refusal where the C++ parser refuses:
//! - a field the message does not have (`Message type "inference.ModelConfig" has no field
//!   named "x".`, at the token after the name, where the C++ parser stands when it reports);
//! - a singular field given twice, where the first value is not the default (fields without
//!   presence) or was given at all (messages and oneof members), and two members of a oneof;
//! - a value of the wrong type (`Expected integer, got: abc`), an integer past its type
//!   (`Integer out of range (…)`), an unknown enum word;
//! - messages nested deeper than 100.
//!
//! Accepted as the C++ parser accepts: bools `true`/`True`/`t`/`1` and
//! `false`/`False`/`f`/`0`; enums by name or number (proto3 enums are open: an unknown number
//! is kept); a message's `:` left out (`input [ { … } ]`, `input { … }`); `<…>` for `{…}`;
//! repeated fields as `[a, b]` lists or as repeated lines, both at once too; map entries as
//! `key`/`value` messages (the last of a key wins); `;` or `,` after any field.

use prost_reflect::{DynamicMessage, Kind, MessageDescriptor, ReflectMessage, Value};

/// Where and why a text could not be read, in protobuf's words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct TextError {
    /// From 1.
    pub line: usize,
    /// From 1.
    pub column: usize,
    pub message: String,
}

/// Protobuf's default recursion limit (`kDefaultRecursionLimit`).
pub const DEPTH_MAX: usize = 100;

/// Reads `text` as a `descriptor` message.
pub fn parse(descriptor: MessageDescriptor, text: &str) -> Result<DynamicMessage, TextError> {
    let mut parser = Parser { tokens: Tokenizer::new(text)?, depth_left: DEPTH_MAX };
    let mut message = DynamicMessage::new(descriptor);
    while parser.tokens.current.kind != TokenKind::End {
        parser.field(&mut message)?;
    }
    Ok(message)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenKind {
    Identifier,
    Integer,
    Float,
    String,
    Symbol,
    End,
}

#[derive(Clone, Debug)]
struct Token {
    kind: TokenKind,
    text: String,
    /// From 0, as protobuf counts internally.
    line: usize,
    column: usize,
}

struct Tokenizer<'a> {
    text: &'a [u8],
    at: usize,
    line: usize,
    column: usize,
    current: Token,
}

impl<'a> Tokenizer<'a> {
    fn new(text: &'a str) -> Result<Self, TextError> {
        let end = Token { kind: TokenKind::End, text: String::new(), line: 0, column: 0 };
        let mut tokens = Tokenizer { text: text.as_bytes(), at: 0, line: 0, column: 0, current: end };
        tokens.next()?;
        Ok(tokens)
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn bump(&mut self) {
        match self.peek() {
            Some(b'\n') => {
                self.line += 1;
                self.column = 0;
            }
            Some(b'\t') => self.column += 8 - self.column % 8,
            Some(_) => self.column += 1,
            None => return,
        }
        self.at += 1;
    }

    fn error(&self, message: impl Into<String>) -> TextError {
        TextError { line: self.line + 1, column: self.column + 1, message: message.into() }
    }

    /// Moves to the next token.
    fn next(&mut self) -> Result<(), TextError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) => self.bump(),
                Some(b'#') => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.bump();
                    }
                }
                _ => break,
            }
        }
        let (line, column, start) = (self.line, self.column, self.at);
        let kind = match self.peek() {
            None => TokenKind::End,
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') {
                    self.bump();
                }
                TokenKind::Identifier
            }
            Some(c) if c.is_ascii_digit() => self.number(false)?,
            Some(b'.') if self.text.get(self.at + 1).is_some_and(u8::is_ascii_digit) => self.number(true)?,
            Some(quote @ (b'"' | b'\'')) => {
                self.bump();
                loop {
                    match self.peek() {
                        None => return Err(self.error("Unexpected end of string.")),
                        Some(b'\n') => return Err(self.error("String literals cannot cross line boundaries.")),
                        Some(b'\\') => {
                            self.bump();
                            if self.peek().is_some() && self.peek() != Some(b'\n') {
                                self.bump();
                            }
                        }
                        Some(c) if c == quote => {
                            self.bump();
                            break;
                        }
                        Some(_) => self.bump(),
                    }
                }
                TokenKind::String
            }
            Some(c) if c < b' ' || c == 0x7f => {
                return Err(self.error("Invalid control characters encountered in text."));
            }
            Some(c) => {
                // One symbol; a multi-byte character is one symbol too.
                let width = match c {
                    0xf0.. => 4,
                    0xe0.. => 3,
                    0xc0.. => 2,
                    _ => 1,
                };
                for _ in 0..width {
                    self.bump();
                }
                TokenKind::Symbol
            }
        };
        let text = String::from_utf8_lossy(&self.text[start..self.at]).into_owned();
        self.current = Token { kind, text, line, column };
        Ok(())
    }

    /// A number from its first character (or from its `.`), as protobuf's `ConsumeNumber`.
    fn number(&mut self, started_with_dot: bool) -> Result<TokenKind, TextError> {
        let more = |t: &mut Self, ok: fn(&u8) -> bool| {
            while t.peek().as_ref().is_some_and(ok) {
                t.bump();
            }
        };
        let started_with_zero = !started_with_dot && self.peek() == Some(b'0');
        self.bump();
        let mut float = false;
        if started_with_zero && matches!(self.peek(), Some(b'x' | b'X')) {
            self.bump();
            if !self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                return Err(self.error("\"0x\" must be followed by hex digits."));
            }
            more(self, u8::is_ascii_hexdigit);
        } else if started_with_zero && self.peek().is_some_and(|c| c.is_ascii_digit()) {
            more(self, |c| (b'0'..=b'7').contains(c));
            if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Err(self.error("Numbers starting with leading zero must be in octal."));
            }
        } else {
            if started_with_dot {
                float = true;
                more(self, u8::is_ascii_digit);
            } else {
                more(self, u8::is_ascii_digit);
                if self.peek() == Some(b'.') {
                    self.bump();
                    float = true;
                    more(self, u8::is_ascii_digit);
                }
            }
            if matches!(self.peek(), Some(b'e' | b'E')) {
                self.bump();
                float = true;
                if matches!(self.peek(), Some(b'+' | b'-')) {
                    self.bump();
                }
                if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    return Err(self.error("\"e\" must be followed by exponent."));
                }
                more(self, u8::is_ascii_digit);
            }
            if matches!(self.peek(), Some(b'f' | b'F')) {
                self.bump();
                float = true;
            }
        }
        if self.peek().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_') {
            return Err(self.error("Need space between number and identifier."));
        }
        if self.peek() == Some(b'.') {
            return Err(self.error(if float {
                "Already saw decimal point or exponent; can't have another one."
            } else {
                "Hex and octal numbers must be integers."
            }));
        }
        Ok(if float { TokenKind::Float } else { TokenKind::Integer })
    }
}

struct Parser<'a> {
    tokens: Tokenizer<'a>,
    depth_left: usize,
}

impl Parser<'_> {
    fn error(&self, message: impl Into<String>) -> TextError {
        let token = &self.tokens.current;
        TextError { line: token.line + 1, column: token.column + 1, message: message.into() }
    }

    fn looking_at(&self, text: &str) -> bool {
        self.tokens.current.kind != TokenKind::String && self.tokens.current.text == text
    }

    fn try_consume(&mut self, text: &str) -> Result<bool, TextError> {
        if self.looking_at(text) {
            self.tokens.next()?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn consume(&mut self, text: &str) -> Result<(), TextError> {
        if !self.try_consume(text)? {
            return Err(self.error(format!("Expected \"{text}\", found \"{}\".", self.tokens.current.text)));
        }
        Ok(())
    }

    fn identifier(&mut self) -> Result<String, TextError> {
        if self.tokens.current.kind != TokenKind::Identifier {
            return Err(self.error(format!("Expected identifier, got: {}", self.tokens.current.text)));
        }
        let name = self.tokens.current.text.clone();
        self.tokens.next()?;
        Ok(name)
    }

    /// One field of `message`, its value, and the `;` or `,` after it (`ConsumeField`).
    fn field(&mut self, message: &mut DynamicMessage) -> Result<(), TextError> {
        let descriptor = message.descriptor();
        if self.looking_at("[") {
            // An extension or an Any's type URL: ModelConfig declares neither.
            self.tokens.next()?;
            let mut name = String::new();
            while !self.looking_at("]") && self.tokens.current.kind != TokenKind::End {
                name += &self.tokens.current.text;
                self.tokens.next()?;
            }
            return Err(self.error(format!(
                "Extension \"{name}\" is not defined or is not an extension of \"{}\".",
                descriptor.full_name()
            )));
        }
        let name = self.identifier()?;
        let Some(field) = descriptor.get_field_by_name(&name) else {
            return Err(
                self.error(format!("Message type \"{}\" has no field named \"{name}\".", descriptor.full_name()))
            );
        };
        if !field.is_list() && !field.is_map() && message.has_field(&field) {
            return Err(self.error(format!("Non-repeated field \"{name}\" is specified multiple times.")));
        }
        if let Some(oneof) = field.containing_oneof()
            && let Some(other) =
                oneof.fields().find(|other| other.number() != field.number() && message.has_field(other))
        {
            return Err(self.error(format!(
                "Field \"{name}\" is specified along with field \"{}\", another member of oneof \"{}\".",
                other.name(),
                oneof.name()
            )));
        }
        let is_message = matches!(field.kind(), Kind::Message(_));
        if is_message {
            self.try_consume(":")?;
        } else {
            self.consume(":")?;
        }
        if (field.is_list() || field.is_map()) && self.try_consume("[")? {
            if !self.try_consume("]")? {
                loop {
                    self.value(message, &field)?;
                    if self.try_consume("]")? {
                        break;
                    }
                    self.consume(",")?;
                }
            }
        } else {
            self.value(message, &field)?;
        }
        let _ = self.try_consume(";")? || self.try_consume(",")?;
        Ok(())
    }

    /// One value of `field`, set in (or added to) `message`.
    fn value(&mut self, message: &mut DynamicMessage, field: &prost_reflect::FieldDescriptor) -> Result<(), TextError> {
        let value = match field.kind() {
            Kind::Message(descriptor) => Value::Message(self.message(descriptor)?),
            kind => self.scalar(&kind, field.name())?,
        };
        if field.is_map() {
            let Value::Message(mut entry) = value else { unreachable!("a map's entries are messages") };
            let descriptor = entry.descriptor();
            let key_field = descriptor.map_entry_key_field();
            let value_field = descriptor.map_entry_value_field();
            let key = entry.take_field(&key_field).unwrap_or_else(|| Value::default_value_for_field(&key_field));
            let key = key.into_map_key().expect("protobuf map keys are integers, bools or strings");
            let entry_value =
                entry.take_field(&value_field).unwrap_or_else(|| Value::default_value_for_field(&value_field));
            if let Value::Map(map) = message.get_field_mut(field) {
                map.insert(key, entry_value);
            }
        } else if field.is_list() {
            if let Value::List(list) = message.get_field_mut(field) {
                list.push(value);
            }
        } else {
            message.set_field(field, value);
        }
        Ok(())
    }

    /// `{ fields }` or `< fields >` (`ConsumeFieldMessage`, `ConsumeMessage`).
    fn message(&mut self, descriptor: MessageDescriptor) -> Result<DynamicMessage, TextError> {
        let close = if self.try_consume("<")? {
            ">"
        } else {
            self.consume("{")?;
            "}"
        };
        if self.depth_left == 0 {
            return Err(self.error(format!(
                "Message is too deep, the parser exceeded the configured recursion limit of {DEPTH_MAX}."
            )));
        }
        self.depth_left -= 1;
        let mut message = DynamicMessage::new(descriptor);
        while !self.looking_at(">") && !self.looking_at("}") {
            self.field(&mut message)?;
        }
        self.consume(close)?;
        self.depth_left += 1;
        Ok(message)
    }

    /// A scalar value of `kind` (`ConsumeFieldValue`); `name` is the field's, for errors.
    fn scalar(&mut self, kind: &Kind, name: &str) -> Result<Value, TextError> {
        Ok(match kind {
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(self.signed(i32::MAX as u64)? as i32),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(self.signed(i64::MAX as u64)?),
            Kind::Uint32 | Kind::Fixed32 => Value::U32(self.unsigned(u32::MAX as u64)? as u32),
            Kind::Uint64 | Kind::Fixed64 => Value::U64(self.unsigned(u64::MAX)?),
            Kind::Float => Value::F32(self.double()? as f32),
            Kind::Double => Value::F64(self.double()?),
            Kind::String => {
                let bytes = self.string()?;
                Value::String(
                    String::from_utf8(bytes)
                        .map_err(|_| self.error(format!("String field \"{name}\" contains invalid UTF-8 data.")))?,
                )
            }
            Kind::Bytes => Value::Bytes(self.string()?.into()),
            Kind::Bool => {
                if self.tokens.current.kind == TokenKind::Integer {
                    Value::Bool(self.unsigned(1)? == 1)
                } else {
                    let word = self.identifier()?;
                    match word.as_str() {
                        "true" | "True" | "t" => Value::Bool(true),
                        "false" | "False" | "f" => Value::Bool(false),
                        _ => {
                            return Err(
                                self.error(format!("Invalid value for boolean field \"{name}\". Value: \"{word}\"."))
                            );
                        }
                    }
                }
            }
            Kind::Enum(descriptor) => {
                let token = self.tokens.current.clone();
                if token.kind == TokenKind::Identifier {
                    self.tokens.next()?;
                    match descriptor.get_value_by_name(&token.text) {
                        Some(value) => Value::EnumNumber(value.number()),
                        None => {
                            return Err(self.error(format!(
                                "Unknown enumeration value of \"{}\" for field \"{name}\".",
                                token.text
                            )));
                        }
                    }
                } else if token.kind == TokenKind::Integer || self.looking_at("-") {
                    // proto3 enums are open: a number without a name is kept as it is.
                    Value::EnumNumber(self.signed(i32::MAX as u64)? as i32)
                } else {
                    return Err(self.error(format!("Expected integer or identifier, got: {}", token.text)));
                }
            }
            Kind::Message(_) => unreachable!("messages are read by `message`"),
        })
    }

    /// `ConsumeUnsignedInteger`: an integer token no greater than `max`.
    fn unsigned(&mut self, max: u64) -> Result<u64, TextError> {
        if self.tokens.current.kind != TokenKind::Integer {
            return Err(self.error(format!("Expected integer, got: {}", self.tokens.current.text)));
        }
        let text = &self.tokens.current.text;
        let value = parse_integer(text).filter(|v| *v <= max);
        let Some(value) = value else { return Err(self.error(format!("Integer out of range ({text})"))) };
        self.tokens.next()?;
        Ok(value)
    }

    /// `ConsumeSignedInteger`: an optional `-`, then an integer within `max` (one more below).
    fn signed(&mut self, max: u64) -> Result<i64, TextError> {
        let negative = self.try_consume("-")?;
        let magnitude = self.unsigned(if negative { max + 1 } else { max })?;
        Ok(if negative { (magnitude as i64).wrapping_neg() } else { magnitude as i64 })
    }

    /// `ConsumeDouble`: an optional `-`, then a decimal integer, a float, `inf`, `infinity` or
    /// `nan` (any case).
    fn double(&mut self) -> Result<f64, TextError> {
        let negative = self.try_consume("-")?;
        let token = self.tokens.current.clone();
        let value = match token.kind {
            TokenKind::Integer => {
                let hex_or_octal = token.text.len() > 1
                    && token.text.starts_with('0')
                    && token.text.as_bytes()[1].is_ascii_alphanumeric();
                if hex_or_octal {
                    return Err(self.error(format!("Expect a decimal number, got: {}", token.text)));
                }
                token.text.parse::<f64>().expect("a decimal integer token reads as a double")
            }
            TokenKind::Float => {
                // Rust reads `1.` and `1.e5` as protobuf does.
                token.text.trim_end_matches(['f', 'F']).parse::<f64>().expect("a float token reads as a double")
            }
            TokenKind::Identifier => match token.text.to_ascii_lowercase().as_str() {
                "inf" | "infinity" => f64::INFINITY,
                "nan" => f64::NAN,
                lower => return Err(self.error(format!("Expected double, got: {lower}"))),
            },
            _ => return Err(self.error(format!("Expected double, got: {}", token.text))),
        };
        self.tokens.next()?;
        Ok(if negative { -value } else { value })
    }

    /// `ConsumeString`: one or more adjacent quoted strings, joined, escapes read.
    fn string(&mut self) -> Result<Vec<u8>, TextError> {
        if self.tokens.current.kind != TokenKind::String {
            return Err(self.error(format!("Expected string, got: {}", self.tokens.current.text)));
        }
        let mut bytes = Vec::new();
        while self.tokens.current.kind == TokenKind::String {
            unescape(&self.tokens.current.text, &mut bytes);
            self.tokens.next()?;
        }
        Ok(bytes)
    }
}

/// An integer token's value: hex (`0x`), octal (leading `0`) or decimal (`ParseInteger`).
fn parse_integer(text: &str) -> Option<u64> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else if text.len() > 1 && text.starts_with('0') {
        u64::from_str_radix(&text[1..], 8).ok()
    } else {
        text.parse().ok()
    }
}

/// A quoted string token's bytes (`ParseStringAppend`): C escapes, octal, hex and `\u`/`\U`.
fn unescape(token: &str, out: &mut Vec<u8>) {
    let bytes = token.as_bytes();
    // The token keeps its quotes; an unterminated one cannot reach here.
    let inner = &bytes[1..bytes.len().saturating_sub(1).max(1)];
    let mut i = 0;
    while i < inner.len() {
        let c = inner[i];
        i += 1;
        if c != b'\\' || i >= inner.len() {
            out.push(c);
            continue;
        }
        let e = inner[i];
        i += 1;
        match e {
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut value = u32::from(e - b'0');
                for _ in 0..2 {
                    match inner.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(value as u8);
            }
            b'x' | b'X' => {
                let mut value = 0u32;
                let mut read = 0;
                while read < 2 && inner.get(i).is_some_and(u8::is_ascii_hexdigit) {
                    value = value * 16 + (inner[i] as char).to_digit(16).expect("a hex digit");
                    i += 1;
                    read += 1;
                }
                if read == 0 {
                    out.extend_from_slice(b"\\x");
                } else {
                    out.push(value as u8);
                }
            }
            b'u' | b'U' => {
                let width = if e == b'u' { 4 } else { 8 };
                let digits = inner.get(i..i + width).filter(|d| d.iter().all(u8::is_ascii_hexdigit));
                let code = digits
                    .and_then(|d| u32::from_str_radix(std::str::from_utf8(d).ok()?, 16).ok())
                    .and_then(char::from_u32);
                match code {
                    Some(ch) => {
                        i += width;
                        let mut buf = [0; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    None => out.push(e),
                }
            }
            // `\\`, `\'`, `\"`, `\?` and any other character stand for themselves.
            other => out.push(other),
        }
    }
}
