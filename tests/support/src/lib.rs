//! What the tests and the benchmarks share: [`postgres::Cluster`], a throwaway PostgreSQL cluster
//! of the machine's server binaries, and [`serve_command`], the `serve` command configured (in its
//! environment, like production) against a development IMS.

pub mod postgres;

use std::process::Command;

use cc_connection_dev_ims::{CERT_NAME_PREFIX, DevIms, world};

/// `cmd` made `serve` on `database_url`, listening on `listen`, trusting the development IMS `ims`
/// (its keys, certificates and region) and its clients: the UI and the integration, the latter also
/// as an integration client.
pub fn serve_command<'a>(
    cmd: &'a mut Command,
    ims: &DevIms,
    database_url: &str,
    listen: &str,
) -> &'a mut Command {
    cmd.arg("serve")
        .env("DATABASE_URL", database_url)
        .env("CCC_LISTEN", listen)
        .env("CCC_IMS_URL", ims.url())
        .env("CCC_IMS_CERT_URL", ims.cert_base_url())
        .env("CCC_IMS_CERT_NAME_PREFIX", CERT_NAME_PREFIX)
        .env("CCC_IMS_REGION", world::REGION)
        .env(
            "CCC_CLIENT_IDS",
            format!("{},{}", world::UI_CLIENT, world::INTEGRATION_CLIENT),
        )
        .env("CCC_INTEGRATION_CLIENT_IDS", world::INTEGRATION_CLIENT)
}
