package sqldb

import (
	"fmt"
	"regexp"
	"strings"
)

// Table is a table name as the SQL backends take it from their WithTable
// option: an optional schema (a PostgreSQL schema, a MySQL database, an
// attached SQLite database) and a name, each an unquoted identifier
// matching [A-Za-z_][A-Za-z0-9_]{0,62}. The backends build their statements
// from templates that use its parts; the name is never spliced into SQL by
// replacing text.
type Table struct {
	// Schema is the schema part, or "" when the name has none.
	Schema string
	// Name is the table's own name, which the backends also use as the
	// stem of the names of their other tables and indexes.
	Name string
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// MaxIdentifier is the longest identifier every supported database keeps
// whole (PostgreSQL truncates at 63 bytes, MySQL refuses more than 64).
const MaxIdentifier = 63

// ParseTable checks name against the one table-name rule of the SQL
// backends: "name" or "schema.name", each part an unquoted identifier
// [A-Za-z_][A-Za-z0-9_]{0,62}. suffixes are what the backend appends to the
// name for its other tables and indexes ("_inbox", "_expires_idx"): name
// plus the longest of them must fit MaxIdentifier bytes too. The error says
// what is wrong in the user's words, without the package prefix (the option
// that took the name adds it).
func ParseTable(name string, suffixes ...string) (Table, error) {
	schema, table, qualified := strings.Cut(name, ".")
	if !qualified {
		schema, table = "", name
	}
	parts := []string{table}
	if qualified {
		parts = append(parts, schema)
	}
	for _, part := range parts {
		if !identRE.MatchString(part) {
			return Table{}, fmt.Errorf("table name %q: want name or schema.name, each part an identifier [A-Za-z_][A-Za-z0-9_]{0,62}", name)
		}
	}
	longest := ""
	for _, s := range suffixes {
		if len(s) > len(longest) {
			longest = s
		}
	}
	if len(table)+len(longest) > MaxIdentifier {
		return Table{}, fmt.Errorf("table name %q: %q is longer than %d bytes, so %q would be cut by the database",
			name, table, MaxIdentifier-len(longest), table+longest)
	}
	return Table{Schema: schema, Name: table}, nil
}

// String returns the table as SQL names it: schema.name, or name.
func (t Table) String() string { return t.Qualified("") }

// Qualified returns the name of the table name+suffix in the table's schema
// (schema.name_suffix, or name_suffix), for the backends' other tables.
func (t Table) Qualified(suffix string) string {
	if t.Schema == "" {
		return t.Name + suffix
	}
	return t.Schema + "." + t.Name + suffix
}

// SchemaPrefix returns "schema." or "".
func (t Table) SchemaPrefix() string {
	if t.Schema == "" {
		return ""
	}
	return t.Schema + "."
}
