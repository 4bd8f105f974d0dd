package avro

import (
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// What FromJSON and Encode accept always fits Decode's limits, so a stored
// event stays readable.
func TestEncodeStaysWithinDecodeLimits(t *testing.T) {
	t.Parallel()
	str := fieldSchema(t, `"string"`)
	big := strings.Repeat("x", MaxBytesSize+1)
	errs := fromJSONErrors(t, str, `{"v":"`+big+`"}`)
	require.Len(t, errs, 1)
	require.Equal(t, RuleRange, errs[0].Rule)
	require.LessOrEqual(t, len(errs[0].Value), maxShownValue+len("…"))

	_, err := str.Encode(map[string]any{"v": big})
	require.ErrorIs(t, err, ErrInvalidPayload)

	ok := strings.Repeat("x", MaxBytesSize)
	b, err := str.EncodeJSON([]byte(`{"v":"` + ok + `"}`))
	require.NoError(t, err)
	_, err = str.Decode(b)
	require.NoError(t, err)

	arr := fieldSchema(t, `{"type":"array","items":"int"}`)
	items := "[" + strings.Repeat("0,", MaxItems) + "0]"
	errs = fromJSONErrors(t, arr, `{"v":`+items+`}`)
	require.Len(t, errs, 1)
	require.Equal(t, RuleRange, errs[0].Rule)

	nulls := fieldSchema(t, `{"type":"array","items":"null"}`)
	_, err = nulls.Encode(map[string]any{"v": make([]any, 2*extraItems)})
	require.ErrorIs(t, err, ErrInvalidPayload, "zero-size items beyond the decode budget")
}

// A Schema is safe for concurrent use, including its resolution cache.
func TestSchemaConcurrentUse(t *testing.T) {
	t.Parallel()
	writer := orderSchema(t)
	reader, err := Parse(strings.Replace(mustRead(t, "testdata/order.avsc"),
		`{"name": "note"`, `{"name": "gift", "type": "boolean", "default": false},
    {"name": "note"`, 1))
	require.NoError(t, err)
	payload, err := writer.EncodeJSON([]byte(validOrder))
	require.NoError(t, err)

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				v, err := ResolveDecode(writer, reader, payload)
				if !assertNoError(t, err) {
					return
				}
				if v.(map[string]any)["gift"] != false {
					t.Error("gift default missing")
					return
				}
				_, err = writer.DecodeJSON(payload)
				assertNoError(t, err)
				_, err = writer.EncodeJSON([]byte(validOrder))
				assertNoError(t, err)
			}
		})
	}
	wg.Wait()
}

func assertNoError(t *testing.T, err error) bool {
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}
