//! `rtb file`: create a file once, atomically and without clobbering.

use crate::config::FileConfig;
use crate::error::{Error, Outcome};

/// Parses `--mode`: octal permission bits, 0 to 7777.
///
/// # Errors
/// A reason when the text is not octal or out of range.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err("expected octal permission bits such as 644 or 0600".into());
    }
    let m = u32::from_str_radix(digits, 8).map_err(|e| e.to_string())?;
    if m > 0o7777 {
        return Err("permission bits go up to 7777".into());
    }
    Ok(m)
}

pub fn run(_cfg: &FileConfig) -> Outcome {
    Err(Error::Failed("rtb file is not built yet".into()))
}
