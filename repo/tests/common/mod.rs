pub mod garage;
pub mod tree;
