//! `rtb safe --store` / RTB_STORE: never panics; a postgres URL is kept
//! as given; what is shown of it holds no user name or password but `***`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reqwest::Url;
use rtb::guard::StoreSpec;

fuzz_target!(|text: &str| {
    let Ok(spec) = StoreSpec::resolve(Some(text)) else {
        return;
    };
    if let StoreSpec::Postgres(url) = &spec {
        assert_eq!(url, text);
        let shown = spec.shown();
        if let Ok(u) = Url::parse(&shown) {
            assert!(u.password().is_none_or(|p| p == "***"), "{text:?} -> {shown:?}");
            assert!(
                u.query_pairs().all(|(k, v)| k != "password" || v == "***"),
                "{text:?} -> {shown:?}"
            );
        }
    }
});
