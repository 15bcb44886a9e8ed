//! The development IMS's small world: orgs, groups, users, entitlements and clients.
//!
//! It holds the cases the product rules turn on: a personal Adobe ID and a federated ID with the
//! same email (only the federated one entitled), an administrator of another company, a member who
//! is not an administrator, an expired entitlement and an entitlement to another service.

/// IMS region of the development IMS (the `as` claim of its tokens).
pub const REGION: &str = "ims-na1-dev";

/// The demo tenant's home org ("Acme AEM").
pub const ACME_HOME_ORG: &str = "A0A0A0A0A0A0A0A0A0A0A0A0@AdobeOrg";
/// Where Acme's Creative Cloud is provisioned ("Acme Creative").
pub const ACME_CREATIVE_ORG: &str = "C0FFEE00C0FFEE00C0FFEE00@AdobeOrg";
/// A second org with Creative Cloud for Acme's administrator ("Acme Design").
pub const ACME_DESIGN_ORG: &str = "D0D0D0D0D0D0D0D0D0D0D0D0@AdobeOrg";
/// An org Acme's administrator can see, without Creative Cloud ("Acme Labs").
pub const NO_CC_ORG: &str = "B0B0B0B0B0B0B0B0B0B0B0B0@AdobeOrg";
/// Another company's org ("Globex AEM").
pub const OTHER_ORG: &str = "E0E0E0E0E0E0E0E0E0E0E0E0@AdobeOrg";

/// "AEM Administrators" of the home org: its members administer the demo tenant.
pub const ACME_ADMIN_GROUP: &str = "700001";
/// "AEM Users" of the home org.
pub const ACME_USERS_GROUP: &str = "700002";
/// "AEM Administrators" of the other company's org.
pub const OTHER_ADMIN_GROUP: &str = "800001";

/// Alice's federated ID (alice@acme.example): administrator, Creative Cloud in Acme Creative and Design.
pub const ALICE_FEDERATED: &str = "A11CE000000000000000FED0@1a2b3c4d5e";
/// Alice's personal Adobe ID, same email: administrator too, but no Creative Cloud entitlement.
pub const ALICE_PERSONAL: &str = "A11CE0000000000000000001@AdobeID";
/// Bob: member of the home org, not an administrator; Creative Cloud in Acme Creative.
pub const BOB_MEMBER: &str = "B0B000000000000000000FED@1a2b3c4d5e";
/// Mallory: administrator of the other company's org, not a member of Acme's.
pub const MALLORY_OTHER_ADMIN: &str = "BAD000000000000000000000@AdobeID";
/// Carol: administrator whose Creative Cloud entitlement in Acme Creative has expired.
pub const CAROL_EXPIRED_CC: &str = "CA201000000000000000FED0@1a2b3c4d5e";
/// Dave: administrator with an active entitlement in Acme Creative, to another service.
pub const DAVE_OTHER_SERVICE: &str = "DA7E0000000000000000FED0@1a2b3c4d5e";

/// The Express integration's technical account: the `user_id` of its service tokens (IMS may
/// put one in a client-credentials token; it is not a person).
pub const EXPRESS_TECHNICAL_ACCOUNT: &str = "EC0000000000000000000001@techacct.adobe.com";

/// The AEM Assets UI backend's client.
pub const UI_CLIENT: &str = "aem-assets-ui-dev";
/// The Adobe Express integration's client.
pub const INTEGRATION_CLIENT: &str = "cc-express-dev";
/// The CC Libraries integration's client.
pub const LIBRARIES_CLIENT: &str = "cc-libraries-dev";

/// The AEM Assets provisioning system's client (registers tenants over the API).
pub const PROVISIONING_CLIENT: &str = "aem-provisioning-dev";

/// The provisioning scope.
pub const PROVISION_SCOPE: &str = "aem_assets.cc_connection.provision";
/// The administrator scope.
pub const ADMIN_SCOPE: &str = "aem_assets.cc_connection.admin";
/// The integration read scope.
pub const READ_SCOPE: &str = "aem_assets.cc_connection.read";
/// The scopes of a user token of the UI client.
pub const USER_SCOPES: &[&str] = &[
    "AdobeID",
    "openid",
    "read_organizations",
    "additional_info.projectedProductContext",
];

/// An org.
#[derive(Debug)]
pub struct DevOrg {
    /// Org id.
    pub id: &'static str,
    /// `orgName`.
    pub name: &'static str,
    /// `orgType`.
    pub org_type: &'static str,
}

/// An entitlement (`prodCtx`).
#[derive(Debug)]
pub struct DevEntitlement {
    /// `serviceCode`.
    pub service_code: &'static str,
    /// `owningEntity`.
    pub org: &'static str,
    /// `statusCode`.
    pub status: &'static str,
}

/// A user.
#[derive(Debug)]
pub struct DevUser {
    /// IMS user id.
    pub id: &'static str,
    /// Display name.
    pub name: &'static str,
    /// Email (never used to match users).
    pub email: &'static str,
    /// `account_type`.
    pub account_type: &'static str,
    /// What this user is for, in the banner.
    pub role: &'static str,
    /// Orgs, each with the idents of the user's groups there.
    pub memberships: &'static [(&'static str, &'static [&'static str])],
    /// `projectedProductContext`.
    pub entitlements: &'static [DevEntitlement],
    /// Whether `serviceAccounts` lists a free `creative_cloud` (not proof of anything).
    pub free_cc_service_account: bool,
}

const fn cc(org: &'static str) -> DevEntitlement {
    DevEntitlement {
        service_code: "creative_cloud",
        org,
        status: "ACTIVE",
    }
}

static ORGS: &[DevOrg] = &[
    DevOrg {
        id: ACME_HOME_ORG,
        name: "Acme AEM",
        org_type: "Enterprise",
    },
    DevOrg {
        id: ACME_CREATIVE_ORG,
        name: "Acme Creative",
        org_type: "Enterprise",
    },
    DevOrg {
        id: ACME_DESIGN_ORG,
        name: "Acme Design",
        org_type: "Team",
    },
    DevOrg {
        id: NO_CC_ORG,
        name: "Acme Labs",
        org_type: "Enterprise",
    },
    DevOrg {
        id: OTHER_ORG,
        name: "Globex AEM",
        org_type: "Enterprise",
    },
];

static USERS: &[DevUser] = &[
    DevUser {
        id: ALICE_FEDERATED,
        name: "Alice Admin",
        email: "alice@acme.example",
        account_type: "type3",
        role: "federated ID; tenant administrator; Creative Cloud in Acme Creative and Acme Design",
        memberships: &[
            (ACME_HOME_ORG, &[ACME_ADMIN_GROUP]),
            (ACME_CREATIVE_ORG, &[]),
            (ACME_DESIGN_ORG, &[]),
            (NO_CC_ORG, &[]),
        ],
        entitlements: &[cc(ACME_CREATIVE_ORG), cc(ACME_DESIGN_ORG)],
        free_cc_service_account: false,
    },
    DevUser {
        id: ALICE_PERSONAL,
        name: "Alice (personal)",
        email: "alice@acme.example",
        account_type: "type1",
        role: "personal Adobe ID, same email as Alice's federated ID; administrator; no Creative Cloud entitlement",
        memberships: &[(ACME_HOME_ORG, &[ACME_ADMIN_GROUP]), (ACME_CREATIVE_ORG, &[])],
        entitlements: &[],
        free_cc_service_account: true,
    },
    DevUser {
        id: BOB_MEMBER,
        name: "Bob Member",
        email: "bob@acme.example",
        account_type: "type3",
        role: "member of the tenant's org, not an administrator",
        memberships: &[(ACME_HOME_ORG, &[ACME_USERS_GROUP]), (ACME_CREATIVE_ORG, &[])],
        entitlements: &[cc(ACME_CREATIVE_ORG)],
        free_cc_service_account: false,
    },
    DevUser {
        id: MALLORY_OTHER_ADMIN,
        name: "Mallory",
        email: "mallory@globex.example",
        account_type: "type1",
        role: "administrator of another company's org",
        memberships: &[(OTHER_ORG, &[OTHER_ADMIN_GROUP])],
        entitlements: &[cc(OTHER_ORG)],
        free_cc_service_account: false,
    },
    DevUser {
        id: CAROL_EXPIRED_CC,
        name: "Carol",
        email: "carol@acme.example",
        account_type: "type3",
        role: "administrator whose Creative Cloud entitlement expired",
        memberships: &[(ACME_HOME_ORG, &[ACME_ADMIN_GROUP]), (ACME_CREATIVE_ORG, &[])],
        entitlements: &[DevEntitlement {
            service_code: "creative_cloud",
            org: ACME_CREATIVE_ORG,
            status: "INACTIVE",
        }],
        free_cc_service_account: false,
    },
    DevUser {
        id: DAVE_OTHER_SERVICE,
        name: "Dave",
        email: "dave@acme.example",
        account_type: "type3",
        role: "administrator entitled to another service only",
        memberships: &[(ACME_HOME_ORG, &[ACME_ADMIN_GROUP]), (ACME_CREATIVE_ORG, &[])],
        entitlements: &[DevEntitlement {
            service_code: "dma_aem_cloud",
            org: ACME_CREATIVE_ORG,
            status: "ACTIVE",
        }],
        free_cc_service_account: false,
    },
];

/// Every org.
pub fn orgs() -> &'static [DevOrg] {
    ORGS
}

/// Every user.
pub fn users() -> &'static [DevUser] {
    USERS
}

/// A user by id (exact match: ids, never emails).
pub fn user(id: &str) -> Option<&'static DevUser> {
    USERS.iter().find(|u| u.id == id)
}

/// An org by id.
pub fn org(id: &str) -> Option<&'static DevOrg> {
    ORGS.iter().find(|o| o.id == id)
}
