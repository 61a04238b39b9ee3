package option_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/steadfast-go/steadfast/internal/option"
)

type config struct{ n int }

func TestApply(t *testing.T) {
	t.Parallel()
	set := func(n int) *option.Setting[config] {
		return &option.Setting[config]{Name: "WithN", Set: func(c *config) error {
			if n < 0 {
				return errors.New("n must not be negative")
			}
			c.n = n
			return nil
		}}
	}
	only := &option.Setting[config]{Name: "WithOther", For: []string{"NewOther"}, Set: func(*config) error { return nil }}
	apply := func(ctor string, opts ...*option.Setting[config]) (config, error) {
		var c config
		err := option.Apply("pkg", ctor, &c, len(opts), func(i int) *option.Setting[config] { return opts[i] })
		return c, err
	}

	c, err := apply("New", set(1), set(2))
	require.NoError(t, err)
	assert.Equal(t, 2, c.n, "later options win")

	_, err = apply("New", set(1), nil)
	assert.EqualError(t, err, "pkg: New: option 1 is nil")
	_, err = apply("New", set(-1))
	assert.EqualError(t, err, "pkg: New: WithN: n must not be negative")
	_, err = apply("New", only)
	assert.EqualError(t, err, "pkg: New: WithOther applies to NewOther, not New")
	_, err = apply("NewOther", only)
	assert.NoError(t, err)
	assert.EqualError(t, option.Errorf("pkg", "New", "WithA %d must be below WithB", 3), "pkg: New: WithA 3 must be below WithB")
}
