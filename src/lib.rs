//! cc-connection: the system of record for the connection of an AEM Assets tenant to a Creative
//! Cloud organization.
pub mod dev_ims;
pub mod domain;
pub mod entity;
pub mod store;
