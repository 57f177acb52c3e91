//! Countries of client addresses from a MaxMind-format database
//! (`geoip.database_path`: GeoLite2/GeoIP2 Country or City, or any `.mmdb`
//! with `country.iso_code`), read with the `maxminddb` crate. Loaded into
//! memory once; looked up by the outcome worker, never in a decision.

use std::net::IpAddr;
use std::path::Path;

use maxminddb::{Reader, path};

use crate::ports::GeoLookup;

pub struct MaxMindCountries {
    reader: Reader<Vec<u8>>,
}

impl MaxMindCountries {
    pub fn open(file: &Path) -> Result<Self, String> {
        let reader = Reader::open_readfile(file)
            .map_err(|e| format!("geoip.database_path `{}`: {e}", file.display()))?;
        Ok(Self { reader })
    }
}

impl GeoLookup for MaxMindCountries {
    fn country(&self, ip: IpAddr) -> Option<String> {
        let found = self.reader.lookup(ip).ok()?;
        for field in ["country", "registered_country"] {
            if let Ok(Some(code)) = found.decode_path::<&str>(&path![field, "iso_code"])
                && !code.is_empty()
            {
                return Some(code.to_owned());
            }
        }
        None
    }
}
