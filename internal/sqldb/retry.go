package sqldb

import (
	"strings"

	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/steadfast-go/steadfast"
)

// IsRetryable reports whether err is a transient conflict that the database
// resolved by aborting the statement or transaction, so that running the whole
// transaction again is the right response:
//
//   - SQLite: SQLITE_BUSY and SQLITE_LOCKED, with their extended codes
//     (BUSY_SNAPSHOT, BUSY_RECOVERY, ...), as reported by modernc.org/sqlite;
//   - MySQL/MariaDB: 1213 (deadlock found) and 1205 (lock wait timeout);
//   - PostgreSQL: SQLSTATE 40001 (serialization failure) and 40P01 (deadlock
//     detected), as reported by pgx.
//
// It classifies by error type and code, never by message text, and imports
// no driver: PostgreSQL and SQLite errors are recognised by the methods
// their types have (SQLState() string, Code() int), MySQL's by reflection on
// go-sql-driver's *MySQLError (its package path, name and Number field).
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	if n, ok := mysqlNumber(err); ok {
		return n == 1213 || n == 1205
	}
	if st, ok := sqlState(err); ok {
		switch st {
		case "40001", "40P01":
			return true
		}
		return false
	}
	return IsSQLiteBusy(err)
}

// IsSQLiteBusy reports whether err is SQLite's SQLITE_BUSY or SQLITE_LOCKED,
// including their extended result codes. It recognises the error of
// modernc.org/sqlite by its Code() int method and its Error type name, so that
// this package need not import the driver.
func IsSQLiteBusy(err error) bool {
	code, ok := sqliteCode(err)
	if !ok {
		return false
	}
	switch code & 0xff {
	case 5, 6: // SQLITE_BUSY, SQLITE_LOCKED
		return true
	}
	return false
}

// RetryPolicy bounds Retry. The zero value retries up to DefaultRetryAttempts
// times with waits from 2 ms doubling to 100 ms, jittered.
type RetryPolicy struct {
	// Attempts is the total number of tries, the first included. Defaults to
	// DefaultRetryAttempts.
	Attempts int
	// MinWait is the base wait before the second try. Defaults to 2 ms.
	MinWait time.Duration
	// MaxWait caps a wait. Defaults to 100 ms.
	MaxWait time.Duration
}

// DefaultRetryAttempts is the number of tries RetryPolicy{} makes.
const DefaultRetryAttempts = 8

// RetryExhaustedError is returned by Retry when every attempt failed with a
// retryable error. It unwraps to the last error.
type RetryExhaustedError struct {
	// Attempts is how many tries were made.
	Attempts int
	// Err is the error of the last try.
	Err error
}

// Error describes the last error and the number of attempts.
func (e *RetryExhaustedError) Error() string {
	return "sqldb: gave up after " + strconv.Itoa(e.Attempts) + " attempts: " + e.Err.Error()
}

// Unwrap returns the last error.
func (e *RetryExhaustedError) Unwrap() error { return e.Err }

// Retry runs fn until it returns an error for which IsRetryable is false
// (nil included), ctx ends, or the policy's attempts are spent. fn must be
// safe to run again: it should begin, run and end its own transaction, since
// a deadlock or busy error aborts the transaction it happened in. Between
// tries Retry waits a jittered, doubling delay. When ctx ends during a wait it
// returns the last error joined with ctx's error; when the attempts run out it
// returns a *RetryExhaustedError.
func Retry(ctx context.Context, p RetryPolicy, fn func(ctx context.Context) error) error {
	attempts := p.Attempts
	if attempts <= 0 {
		attempts = DefaultRetryAttempts
	}
	minWait, maxWait := p.MinWait, p.MaxWait
	if minWait <= 0 {
		minWait = 2 * time.Millisecond
	}
	if maxWait <= 0 {
		maxWait = 100 * time.Millisecond
	}
	var err error
	for i := 0; i < attempts; i++ {
		if err = fn(ctx); !IsRetryable(err) {
			return err
		}
		if i == attempts-1 {
			break
		}
		wait := minWait << i
		if wait > maxWait || wait <= 0 {
			wait = maxWait
		}
		// Jitter: between half and the whole of wait, so that the
		// transactions that collided do not collide again in step.
		wait = wait/2 + rand.N(wait/2+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, context.Cause(ctx))
		case <-t.C:
		}
	}
	return &RetryExhaustedError{Attempts: attempts, Err: err}
}

// SQLiteDSN is steadfast.SQLiteDSN with the busy timeout set to
// busyTimeout (5 s when busyTimeout <= 0), for tests whose processes share a
// file under heavy load.
func SQLiteDSN(path string, busyTimeout time.Duration) string {
	dsn := steadfast.SQLiteDSN(path)
	if busyTimeout <= 0 {
		return dsn
	}
	return strings.Replace(dsn, "_busy_timeout=5000", "_busy_timeout="+strconv.FormatInt(busyTimeout.Milliseconds(), 10), 1)
}
