// Package sqldb holds what the SQL backends of steadfast share: the small
// transaction interface they accept, and the classification of the errors a
// caller retries (SQLite busy, MySQL/MariaDB deadlock).
package sqldb
