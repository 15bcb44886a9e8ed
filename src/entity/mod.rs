pub mod tenant; pub mod connection;
