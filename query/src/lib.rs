//! Forensic queries over the ledger (DataFusion SQL, Tantivy full text). Empty until the query issue.
