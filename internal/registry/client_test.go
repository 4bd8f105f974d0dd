package registry_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	havro "github.com/hamba/avro/v2"
	hregistry "github.com/hamba/avro/v2/registry"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/pgjet/pgjet/internal/avro"
	"github.com/pgjet/pgjet/internal/registry"
)

// orderPlaced is a Go type hamba encodes and decodes with the test schema.
type orderPlaced struct {
	ID     string `avro:"id"`
	Amount int64  `avro:"amount"`
	Note   string `avro:"note"`
}

const orderPlacedV1 = `{"type":"record","name":"OrderPlaced","namespace":"shop","fields":[
	{"name":"id","type":"string"},
	{"name":"amount","type":"long"}]}`

const orderPlacedV2 = `{"type":"record","name":"OrderPlaced","namespace":"shop","fields":[
	{"name":"id","type":"string"},
	{"name":"amount","type":"long"},
	{"name":"note","type":"string","default":"none"}]}`

// TestHambaClient drives the API with hamba/avro's Confluent registry client, written
// against Confluent's server, not this one.
func TestHambaClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := newRegistry(t, newPool(t))
	srv := httptest.NewServer(registry.NewHandler(reg, zaptest.NewLogger(t)))
	t.Cleanup(srv.Close)
	client, err := hregistry.NewClient(srv.URL, hregistry.WithHTTPClient(srv.Client()))
	require.NoError(t, err)
	const subject = "shop.OrderPlaced"

	id1, _, err := client.CreateSchema(ctx, subject, orderPlacedV1)
	require.NoError(t, err)
	require.Positive(t, id1)
	again, _, err := client.CreateSchema(ctx, subject, orderPlacedV1)
	require.NoError(t, err)
	require.Equal(t, id1, again)

	s, err := client.GetSchema(ctx, id1)
	require.NoError(t, err)
	require.Equal(t, "shop.OrderPlaced", s.(*havro.RecordSchema).FullName())

	id2, _, err := client.CreateSchema(ctx, subject, orderPlacedV2)
	require.NoError(t, err)
	require.NotEqual(t, id1, id2)

	latest, err := client.GetLatestSchema(ctx, subject)
	require.NoError(t, err)
	require.Len(t, latest.(*havro.RecordSchema).Fields(), 3)
	require.True(t, latest.(*havro.RecordSchema).Fields()[2].HasDefault(), "defaults survive the round trip")

	info, err := client.GetSchemaInfo(ctx, subject, 1)
	require.NoError(t, err)
	require.Equal(t, id1, info.ID)
	require.Equal(t, 1, info.Version)
	info, err = client.GetLatestSchemaInfo(ctx, subject)
	require.NoError(t, err)
	require.Equal(t, id2, info.ID)
	require.Equal(t, 2, info.Version)

	id, _, err := client.IsRegistered(ctx, subject, orderPlacedV1)
	require.NoError(t, err)
	require.Equal(t, id1, id)

	subjects, err := client.GetSubjects(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{subject}, subjects)
	versions, err := client.GetVersions(ctx, subject)
	require.NoError(t, err)
	require.Equal(t, []int{1, 2}, versions)
	byVersion, err := client.GetSchemaByVersion(ctx, subject, 1)
	require.NoError(t, err)
	require.Len(t, byVersion.(*havro.RecordSchema).Fields(), 2)

	// Compatibility: levels set through the client take effect in the registry.
	require.NoError(t, client.SetCompatibilityLevel(ctx, subject, hregistry.FullCL))
	level, err := reg.Compatibility(ctx, subject)
	require.NoError(t, err)
	require.Equal(t, registry.Full, level)
	require.NoError(t, client.SetGlobalCompatibilityLevel(ctx, hregistry.ForwardTransitiveCL))
	level, err = reg.Compatibility(ctx, "other")
	require.NoError(t, err)
	require.Equal(t, registry.ForwardTransitive, level)
	// hamba reads these replies' "compatibility" member, but Confluent (and this API)
	// send "compatibilityLevel", so hamba sees "" from either server; only the call
	// itself is checked here.
	_, err = client.GetCompatibilityLevel(ctx, subject)
	require.NoError(t, err)
	_, err = client.GetGlobalCompatibilityLevel(ctx)
	require.NoError(t, err)

	ok, err := client.IsCompatible(ctx, subject, orderPlacedV2)
	require.NoError(t, err)
	require.True(t, ok)
	breaking := `{"type":"record","name":"OrderPlaced","namespace":"shop","fields":[{"name":"id","type":"string"}]}`
	ok, err = client.IsCompatible(ctx, subject, breaking)
	require.NoError(t, err)
	require.False(t, ok)

	// Errors arrive as hamba's registry.Error with Confluent's codes.
	_, _, err = client.CreateSchema(ctx, subject, breaking)
	var rerr hregistry.Error
	require.True(t, errors.As(err, &rerr), "%T %v", err, err)
	require.Equal(t, http.StatusConflict, rerr.StatusCode)
	require.Equal(t, 409, rerr.Code)
	require.Contains(t, rerr.Message, "version 2")
	_, err = client.GetSchema(ctx, 9999)
	require.True(t, errors.As(err, &rerr))
	require.Equal(t, 40403, rerr.Code)
	_, err = client.GetLatestSchema(ctx, "nope")
	require.True(t, errors.As(err, &rerr))
	require.Equal(t, 40401, rerr.Code)

	// hamba encodes in the Confluent wire format; pgjet decodes, with the schema the id
	// names.
	in := orderPlaced{ID: "o-1", Amount: 1250, Note: "gift"}
	payload, err := havro.Marshal(latest, in)
	require.NoError(t, err)
	wire := append(append([]byte{0}, info.IDBytes()...), payload...)
	schemaID, body, err := avro.SplitWire(wire)
	require.NoError(t, err)
	require.Equal(t, uint32(id2), schemaID)
	ours, err := reg.SchemaByID(ctx, int(schemaID))
	require.NoError(t, err)
	decoded, err := ours.DecodeJSON(body)
	require.NoError(t, err)
	require.JSONEq(t, `{"id":"o-1","amount":1250,"note":"gift"}`, string(decoded))

	// pgjet encodes with version 1; hamba's decoder fetches the schema by id and reads it.
	v1, err := reg.Version(ctx, subject, 1)
	require.NoError(t, err)
	old, err := v1.Schema.Encode(map[string]any{"id": "o-2", "amount": int64(7)})
	require.NoError(t, err)
	var out orderPlaced
	require.NoError(t, hregistry.NewDecoder(client).Decode(ctx, avro.AppendWire(nil, uint32(v1.ID), old), &out))
	require.Equal(t, orderPlaced{ID: "o-2", Amount: 7}, out)
}
