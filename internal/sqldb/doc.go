// Package sqldb holds what the SQL backends of steadfast share: the one
// table-name rule (ParseTable), the SQLite data source name, the dialect
// names, and the classification of database errors (retried conflicts,
// aborted transactions, bounded lock waits) without importing any driver.
package sqldb
