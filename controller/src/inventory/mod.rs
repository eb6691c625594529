//! The asset register's formats and reports: CSV import and export (`csv.rs`) and the reports an
//! operator asks for (`report.rs`). Pure: they read the state's tables and text, and write text.

pub mod csv;
pub mod report;
