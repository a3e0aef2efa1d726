//! The CloudEvents JSON event format (structured content mode).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{Map, Value};

use crate::event::{invalid, validate_attribute_name};
use crate::kafka::media_type;
use crate::{CeError, CloudEvent, SPEC_VERSION};

/// True for `application/json` and any `+json` suffix type: data the JSON format embeds as JSON.
pub(crate) fn is_json_media_type(content_type: Option<&str>) -> bool {
    match content_type {
        None => true,
        Some(ct) => {
            let mt = media_type(ct);
            mt == "application/json" || mt == "text/json" || mt.ends_with("+json")
        }
    }
}

pub(crate) fn encode_json(event: &CloudEvent) -> Vec<u8> {
    let mut obj = Map::new();
    obj.insert("specversion".into(), SPEC_VERSION.into());
    obj.insert("id".into(), event.id.clone().into());
    obj.insert("source".into(), event.source.clone().into());
    obj.insert("type".into(), event.ty.clone().into());
    let optional = [
        ("time", &event.time),
        ("subject", &event.subject),
        ("datacontenttype", &event.datacontenttype),
        ("dataschema", &event.dataschema),
    ];
    for (name, value) in optional {
        if let Some(v) = value {
            obj.insert(name.into(), v.clone().into());
        }
    }
    for (name, value) in &event.extensions {
        obj.insert(name.clone(), value.clone().into());
    }
    if let Some(data) = &event.data {
        let embedded = is_json_media_type(event.datacontenttype.as_deref())
            .then(|| serde_json::from_slice::<Value>(data).ok())
            .flatten();
        match embedded {
            Some(json) => obj.insert("data".into(), json),
            None => obj.insert("data_base64".into(), BASE64.encode(data).into()),
        };
    }
    // A map of strings and JSON values always serialises.
    serde_json::to_vec(&Value::Object(obj)).unwrap_or_default()
}

pub(crate) fn decode_json(bytes: &[u8]) -> Result<CloudEvent, CeError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| CeError::NotJson(e.to_string()))?;
    let Value::Object(mut obj) = value else {
        return Err(CeError::NotJson("top level is not a JSON object".into()));
    };
    match obj.remove("specversion") {
        None => return Err(CeError::MissingAttribute("specversion")),
        Some(Value::String(v)) if v == SPEC_VERSION => {}
        Some(Value::String(v)) => return Err(CeError::WrongSpecVersion(v)),
        Some(_) => return Err(invalid("specversion", "must be the string \"1.0\"")),
    }
    let mut event = CloudEvent {
        id: take_string(&mut obj, "id")?.ok_or(CeError::MissingAttribute("id"))?,
        source: take_string(&mut obj, "source")?.ok_or(CeError::MissingAttribute("source"))?,
        ty: take_string(&mut obj, "type")?.ok_or(CeError::MissingAttribute("type"))?,
        time: take_string(&mut obj, "time")?,
        subject: take_string(&mut obj, "subject")?,
        datacontenttype: take_string(&mut obj, "datacontenttype")?,
        dataschema: take_string(&mut obj, "dataschema")?,
        ..CloudEvent::default()
    };
    let data = obj.remove("data");
    let data_base64 = obj.remove("data_base64");
    let data = data.filter(|d| !d.is_null());
    event.data = match (data, data_base64) {
        (Some(_), Some(_)) => {
            return Err(invalid("data", "both `data` and `data_base64` are present"))
        }
        (None, None) | (None, Some(Value::Null)) => None,
        (None, Some(Value::String(b64))) => Some(
            BASE64
                .decode(b64.as_bytes())
                .map_err(|e| invalid("data_base64", &format!("not valid base64: {e}")))?,
        ),
        (None, Some(_)) => return Err(invalid("data_base64", "must be a base64 string")),
        (Some(Value::String(s)), None) if !is_json_media_type(event.datacontenttype.as_deref()) => {
            Some(s.into_bytes())
        }
        (Some(json), None) => Some(serde_json::to_vec(&json).unwrap_or_default()),
    };
    for (name, value) in obj {
        validate_attribute_name(&name)?;
        let text = match value {
            Value::String(s) => s,
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Null => continue,
            _ => {
                return Err(invalid(
                    &name,
                    "extension values must be strings, numbers or booleans",
                ))
            }
        };
        event.extensions.insert(name, text);
    }
    Ok(event)
}

fn take_string(
    obj: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, CeError> {
    match obj.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(name, "must be a string")),
    }
}
