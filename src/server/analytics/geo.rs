//! Where a page view comes from, as the original enriched it: the ISO country code and the
//! English city name from a MaxMind GeoLite2-City database (`GEOIP_DB_PATH`, read whole into
//! memory), and coordinates for the stats' locations from a simplemaps `worldcities.csv`
//! (`city, city_ascii, lat, lng, country, iso2, …`), keyed `ISO2-CITYUPPER` as the original
//! keyed them. Either file may be missing: then rows have no place, or places no coordinates.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

/// The enrichment data that could be loaded.
#[derive(Default)]
pub struct Geo {
    cities: Option<maxminddb::Reader<Vec<u8>>>,
    coordinates: HashMap<String, (f64, f64)>,
}

/// The parts of a GeoIP2 City record that are stored.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    country: Option<Country<'a>>,
    #[serde(borrow, default)]
    city: Option<City<'a>>,
}

#[derive(Deserialize)]
struct Country<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct City<'a> {
    #[serde(borrow, default)]
    names: BTreeMap<&'a str, &'a str>,
}

impl Geo {
    /// Loads what is there of `geoip` and `world_cities`; a file that is missing or unreadable
    /// is logged and left out.
    pub fn load(geoip: &Path, world_cities: &Path) -> Geo {
        let cities = match maxminddb::Reader::open_readfile(geoip) {
            Ok(reader) => Some(reader),
            Err(e) if geoip.exists() => {
                tracing::warn!("analytics: cannot read {}: {e}; no places", geoip.display());
                None
            }
            Err(_) => {
                tracing::info!("analytics: no GeoIP database at {}", geoip.display());
                None
            }
        };
        let coordinates = if world_cities.exists() {
            read_coordinates(world_cities).unwrap_or_else(|e| {
                tracing::warn!("analytics: cannot read {}: {e}", world_cities.display());
                HashMap::new()
            })
        } else {
            HashMap::new()
        };
        Geo {
            cities,
            coordinates,
        }
    }

    /// Country code and English city name of `client`, when the database knows it.
    pub fn locate(&self, client: IpAddr) -> (Option<String>, Option<String>) {
        let Some(reader) = &self.cities else {
            return (None, None);
        };
        let record = reader
            .lookup(client)
            .ok()
            .and_then(|found| found.decode::<Record>().ok().flatten());
        let Some(record) = record else {
            return (None, None);
        };
        let country = record.country.and_then(|c| c.iso_code).map(str::to_owned);
        let city = record
            .city
            .and_then(|c| c.names.get("en").map(|n| (*n).to_owned()));
        (country, city)
    }

    /// Latitude and longitude of `city` in `country` (ISO code).
    pub fn coordinates(&self, country: &str, city: &str) -> Option<(f64, f64)> {
        self.coordinates.get(&key(country, city)).copied()
    }
}

fn key(country: &str, city: &str) -> String {
    format!("{}-{}", country.to_uppercase(), city.to_uppercase())
}

/// `ISO2-CITYUPPER` → (lat, lng) for both the `city` and the `city_ascii` spelling.
fn read_coordinates(path: &Path) -> Result<HashMap<String, (f64, f64)>, csv::Error> {
    let mut map = HashMap::new();
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_path(path)?;
    for row in reader.records() {
        let row = row?;
        let field = |i| row.get(i).unwrap_or("").trim();
        let (Ok(lat), Ok(lng)) = (field(2).parse::<f64>(), field(3).parse::<f64>()) else {
            continue;
        };
        let iso2 = field(5);
        for name in [field(0), field(1)] {
            if !name.is_empty() && !iso2.is_empty() {
                map.entry(key(iso2, name)).or_insert((lat, lng));
            }
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_come_from_real_csv_with_quoted_commas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("worldcities.csv");
        std::fs::write(
            &path,
            "\"city\",\"city_ascii\",\"lat\",\"lng\",\"country\",\"iso2\",\"iso3\"\n\
             \"Köln\",\"Koln\",\"50.9422\",\"6.9578\",\"Germany\",\"DE\",\"DEU\"\n\
             \"Washington, D.C.\",\"Washington\",\"38.9047\",\"-77.0163\",\"United States\",\"US\",\"USA\"\n\
             \"Broken\",\"Broken\",\"x\",\"y\",\"Nowhere\",\"NW\",\"NWH\"\n",
        )
        .unwrap();
        let geo = Geo::load(&dir.path().join("missing.mmdb"), &path);
        assert_eq!(geo.coordinates("DE", "Köln"), Some((50.9422, 6.9578)));
        assert_eq!(geo.coordinates("de", "koln"), Some((50.9422, 6.9578)));
        assert_eq!(
            geo.coordinates("US", "Washington, D.C."),
            Some((38.9047, -77.0163))
        );
        assert_eq!(geo.coordinates("NW", "Broken"), None);
        assert_eq!(geo.locate("203.0.113.7".parse().unwrap()), (None, None));
    }
}
