//! OCI documents and references from hostile bytes: the whole input is tried as each of
//! [`ImageManifest`], [`ImageIndex`], [`ImageConfig`], [`Descriptor`] (JSON), and as text
//! for [`LayoutRef::parse`] and [`Reference::parse`].
//!
//! Oracles: no panics; what parses serializes to JSON that parses back to an equal value
//! (unknown fields included) and serializes identically again; a parsed layout reference
//! spelled back as `oci:PATH[:TAG]` parses to the same; a parsed registry reference
//! displays as a string that parses to the same reference, and its parts are valid on
//! their own ([`Reference::new`]).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_oci::layout::LayoutRef;
use strata_oci::{Descriptor, ImageConfig, ImageIndex, ImageManifest};
use strata_registry::Reference;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<T>(data) else { return };
    let json = serde_json::to_vec(&v).expect("a parsed document serializes");
    let again: T = serde_json::from_slice(&json).expect("strata's JSON parses back");
    assert_eq!(again, v, "document changed across a JSON round trip");
    assert_eq!(serde_json::to_vec(&again).unwrap(), json, "serialization is not stable");
}

fn layout_ref(s: &str) {
    let Ok(r) = LayoutRef::parse(s) else { return };
    let path = r.path.to_str().expect("parsed from UTF-8");
    assert!(!path.is_empty());
    let spelled = match &r.tag {
        Some(t) => {
            assert!(!t.is_empty() && !t.contains('/'), "tag {t:?}");
            format!("oci:{path}:{t}")
        }
        None => format!("oci:{path}"),
    };
    assert_eq!(LayoutRef::parse(&spelled).expect("re-spelled reference parses"), r);
}

fn reference(s: &str) {
    let Ok(r) = Reference::parse(s) else { return };
    let shown = r.to_string();
    assert_eq!(Reference::parse(&shown).expect("a displayed reference parses"), r, "{s:?} -> {shown:?}");
    assert!(r.tag().is_some() || r.digest().is_some());
    let rebuilt = Reference::new(r.registry(), r.repository(), r.manifest_ref()).expect("parts of a reference");
    assert_eq!((rebuilt.registry(), rebuilt.repository()), (r.registry(), r.repository()));
}

fuzz_target!(|data: &[u8]| {
    round_trip::<ImageManifest>(data);
    round_trip::<ImageIndex>(data);
    round_trip::<ImageConfig>(data);
    round_trip::<Descriptor>(data);
    if let Ok(s) = std::str::from_utf8(data) {
        layout_ref(s);
        reference(s);
    }
});
