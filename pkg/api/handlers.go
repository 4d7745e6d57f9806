package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"aitokens/pkg/query"
	"aitokens/pkg/service"
	"aitokens/pkg/token"
)

func (s *Server) get(w http.ResponseWriter, r *http.Request) error {
	fields, err := query.ParseFields(r.URL.Query().Get("fields"))
	if err != nil {
		return err
	}
	t, err := s.svc.Get(r.Context(), r.PathValue("tenant"), r.PathValue("tokenId"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, query.Project(t.Document(), fields))
	return nil
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) error {
	return s.listWith(w, r, r.URL.Query().Get("q"))
}

func (s *Server) search(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Q *string `json:"q"`
	}
	raw, err := readBody(r)
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(raw))) > 0 {
		if err := decodeJSON(raw, &body); err != nil {
			return err
		}
	}
	q := ""
	if body.Q != nil {
		q = *body.Q
	}
	return s.listWith(w, r, q)
}

func (s *Server) listWith(w http.ResponseWriter, r *http.Request, q string) error {
	params := r.URL.Query()
	in := service.List{Tenant: r.PathValue("tenant")}
	var err error
	if in.Page, err = query.ParsePage(params.Get("pageNumber"), params.Get("pageSize")); err != nil {
		return err
	}
	if in.Sort, err = query.ParseSort(params.Get("sort")); err != nil {
		return err
	}
	fields, err := query.ParseFields(params.Get("fields"))
	if err != nil {
		return err
	}
	if in.Query, err = query.Parse(q); err != nil {
		return err
	}
	res, err := s.svc.List(r.Context(), in)
	if err != nil {
		return err
	}
	docs := make([]map[string]any, len(res.Tokens))
	for i, t := range res.Tokens {
		docs[i] = query.Project(t.Document(), fields)
	}
	writePage(w, r, docs, res.Total)
	return nil
}

// upsertBody is the PUT body; pointers tell "absent" from "empty". Unknown and read-only
// fields (id, metadata.createdAt, ...) are ignored.
type upsertBody struct {
	Name     *string `json:"name"`
	Value    *string `json:"value"`
	Metadata *struct {
		// A float, so that 1e3 reads as 1000 and 1.5 gets a clear message rather than a
		// type error; version() checks that it is whole.
		Version *float64 `json:"version"`
	} `json:"metadata"`
	// Raw, to tell absent (unchanged) from null (no expiry) from a date.
	ExpiresAt  json.RawMessage `json:"expiresAt"`
	Restricted *bool           `json:"restricted"`
	Generate   *bool           `json:"generate"`
	Prefix     *string         `json:"prefix"`
	Replaces   *string         `json:"replaces"`
	// A float for the same reason as metadata.version.
	GraceSeconds *float64 `json:"graceSeconds"`
	// Raw, to read it strictly (egress).
	Egress json.RawMessage `json:"egress"`
}

// egress is the body's egress policy, nil when absent or null. It is read strictly: a key it
// does not know is refused rather than dropped, since a client would take a dropped key (say
// "methods") for a limit that is kept.
func (b upsertBody) egress() (*token.Egress, error) {
	if len(b.Egress) == 0 || string(b.Egress) == "null" {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b.Egress))
	dec.DisallowUnknownFields()
	var e token.Egress
	err := dec.Decode(&e)
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
		return &e, nil
	case errors.As(err, &typeErr):
		field := "egress"
		if typeErr.Field != "" {
			field += "." + typeErr.Field
		}
		got, _, _ := strings.Cut(typeErr.Value, " ")
		return nil, token.InvalidField(field, field+" must be of type "+jsonType(typeErr.Type.Kind().String())+", not "+got)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		if len(name) > 66 {
			name = "(a long name)"
		}
		return nil, token.InvalidField("egress", "egress holds an unknown field "+name+": it takes allowedHosts and inject {in, name, template} only")
	}
	return nil, token.InvalidField("egress", "egress must be an object {allowedHosts, inject}")
}

// graceSeconds is graceSeconds as a whole number, nil when absent.
func (b upsertBody) graceSeconds() (*int, error) {
	if b.GraceSeconds == nil {
		return nil, nil
	}
	f := *b.GraceSeconds
	if f != math.Trunc(f) || f < 0 || f > token.MaxGraceSeconds {
		return nil, token.InvalidField("graceSeconds", fmt.Sprintf("graceSeconds must be a whole number from 0 to %d", token.MaxGraceSeconds))
	}
	g := int(f)
	return &g, nil
}

// expiresAt is the body's expiresAt: nil when absent or null, remove when null.
func (b upsertBody) expiresAt() (at *time.Time, remove bool, err error) {
	if len(b.ExpiresAt) == 0 {
		return nil, false, nil
	}
	if string(b.ExpiresAt) == "null" {
		return nil, true, nil
	}
	var raw string
	if json.Unmarshal(b.ExpiresAt, &raw) != nil {
		return nil, false, token.InvalidField("expiresAt", "expiresAt must be an RFC 3339 date-time string")
	}
	t, err := service.ParseExpiry(raw)
	if err != nil {
		return nil, false, err
	}
	return &t, false, nil
}

// maxVersion is the largest version a float64 holds exactly.
const maxVersion = 1 << 53

// version is metadata.version as a whole number, nil when absent.
func (b upsertBody) version() (*int, error) {
	if b.Metadata == nil || b.Metadata.Version == nil {
		return nil, nil
	}
	f := *b.Metadata.Version
	if f != math.Trunc(f) || f < 1 || f > maxVersion {
		return nil, token.InvalidField("metadata.version", "metadata.version must be a whole number of 1 or more")
	}
	v := int(f)
	return &v, nil
}

func (s *Server) upsert(w http.ResponseWriter, r *http.Request) error {
	raw, err := readBody(r)
	if err != nil {
		return err
	}
	var body upsertBody
	if err := decodeJSON(raw, &body); err != nil {
		return err
	}
	in := service.Upsert{Tenant: r.PathValue("tenant"), ID: r.PathValue("tokenId"), Name: body.Name, Value: body.Value,
		Generate: body.Generate != nil && *body.Generate, Prefix: body.Prefix, Restricted: body.Restricted,
		Replaces: body.Replaces, Meta: meta(r)}
	if in.GraceSeconds, err = body.graceSeconds(); err != nil {
		return err
	}
	if in.Version, err = body.version(); err != nil {
		return err
	}
	if in.ExpiresAt, in.RemoveExpiry, err = body.expiresAt(); err != nil {
		return err
	}
	if in.Egress, err = body.egress(); err != nil {
		return err
	}
	res, err := s.svc.Upsert(r.Context(), in)
	if err != nil {
		return err
	}
	if res.Created {
		w.Header().Set("Location", r.URL.EscapedPath())
		created := map[string]string{"id": in.ID}
		if res.Generated != "" {
			created["value"] = res.Generated // the one time a value leaves through the API
		}
		writeJSON(w, http.StatusCreated, created)
		return nil
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) patch(w http.ResponseWriter, r *http.Request) error {
	raw, err := readBody(r)
	if err != nil {
		return err
	}
	var ops []struct {
		Op    *string `json:"op"`
		Path  *string `json:"path"`
		Value any     `json:"value"`
	}
	if err := decodeJSON(raw, &ops); err != nil {
		return err
	}
	patch := make([]service.PatchOp, len(ops))
	for i, op := range ops {
		if op.Op == nil || op.Path == nil {
			return token.InvalidField("body["+strconv.Itoa(i)+"]", "each operation needs op and path")
		}
		patch[i] = service.PatchOp{Op: *op.Op, Path: *op.Path, Value: op.Value}
	}
	if err := s.svc.Patch(r.Context(), r.PathValue("tenant"), r.PathValue("tokenId"), patch, meta(r)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request) error {
	var force bool
	switch r.URL.Query().Get("force") {
	case "", "false":
	case "true":
		force = true
	default:
		return token.InvalidField("force", "force must be true or false")
	}
	if err := s.svc.Delete(r.Context(), r.PathValue("tenant"), r.PathValue("tokenId"), force, meta(r)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listUsages(w http.ResponseWriter, r *http.Request) error {
	page, err := query.ParsePage(r.URL.Query().Get("pageNumber"), r.URL.Query().Get("pageSize"))
	if err != nil {
		return err
	}
	usages, total, err := s.svc.Usages(r.Context(), r.PathValue("tenant"), r.PathValue("tokenId"), page)
	if err != nil {
		return err
	}
	docs := make([]usageJSON, len(usages))
	for i, u := range usages {
		docs[i] = usageJSON{Kind: u.Kind, RefID: u.RefID, CreatedAt: token.FormatTime(u.CreatedAt)}
	}
	writePage(w, r, docs, total)
	return nil
}

// eventJSON is an audit event as the API shows it.
type eventJSON struct {
	At         string   `json:"at"`
	Action     string   `json:"action"`
	Actor      string   `json:"actor"`
	RequestID  string   `json:"requestId"`
	TokenID    string   `json:"tokenId"`
	Version    int      `json:"version"`
	Outcome    string   `json:"outcome"`
	Changes    []string `json:"changes,omitempty"`
	Usage      string   `json:"usage,omitempty"`
	Replaces   string   `json:"replaces,omitempty"`
	ReplacedBy string   `json:"replacedBy,omitempty"`
	Lead       string   `json:"lead,omitempty"`      // expiring: the lead time announced
	ExpiresAt  string   `json:"expiresAt,omitempty"` // expiring, expired: the expiry concerned
}

// listEvents is a token's audit trail, newest first, paged like the list; it answers for a
// deleted token too (its events outlive it).
func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) error {
	page, err := query.ParsePage(r.URL.Query().Get("pageNumber"), r.URL.Query().Get("pageSize"))
	if err != nil {
		return err
	}
	events, total, err := s.svc.Events(r.Context(), r.PathValue("tenant"), r.PathValue("tokenId"), page)
	if err != nil {
		return err
	}
	docs := make([]eventJSON, len(events))
	for i, e := range events {
		docs[i] = eventJSON{At: token.FormatTime(e.At), Action: e.Action, Actor: e.Actor, RequestID: e.RequestID,
			TokenID: e.TokenID, Version: e.Version, Outcome: e.Outcome, Changes: e.Changes, Usage: e.Usage,
			Replaces: e.Replaces, ReplacedBy: e.ReplacedBy, Lead: e.Lead}
		if e.ExpiresAt != nil {
			docs[i].ExpiresAt = token.FormatTime(*e.ExpiresAt)
		}
	}
	writePage(w, r, docs, total)
	return nil
}

// writePage answers one page of a paged read, with X-Total-Count when the client asks for it.
func writePage(w http.ResponseWriter, r *http.Request, page any, total int) {
	if want, _ := strconv.ParseBool(r.Header.Get("X-Total-Count")); want {
		w.Header().Set("X-Total-Count", strconv.Itoa(total))
	}
	writeJSON(w, http.StatusOK, page)
}

// usageJSON is a usage as the API shows it.
type usageJSON struct {
	Kind      string `json:"kind"`
	RefID     string `json:"refId"`
	CreatedAt string `json:"createdAt"`
}

func (s *Server) registerUsage(w http.ResponseWriter, r *http.Request) error {
	created, err := s.svc.RegisterUsage(r.Context(), r.PathValue("tenant"), r.PathValue("tokenId"), r.PathValue("kind"), r.PathValue("refId"), meta(r))
	if err != nil {
		return err
	}
	if created {
		writeJSON(w, http.StatusCreated, map[string]string{"kind": r.PathValue("kind"), "refId": r.PathValue("refId")})
		return nil
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) unregisterUsage(w http.ResponseWriter, r *http.Request) error {
	if err := s.svc.UnregisterUsage(r.Context(), r.PathValue("tenant"), r.PathValue("tokenId"), r.PathValue("kind"), r.PathValue("refId"), meta(r)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// meta is who makes the request's change and under which request id, for its audit event.
func meta(r *http.Request) service.Meta {
	id, _ := r.Context().Value(requestIDKey{}).(string)
	actor, _ := r.Context().Value(actorKey{}).(string)
	return service.Meta{RequestID: id, Actor: actor}
}

// readBody reads the whole body within MaxBodyBytes. A body must be JSON: a Content-Type of
// another media type is a 415 (a request without one is read as JSON).
func readBody(r *http.Request) ([]byte, error) {
	raw, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, &token.Error{Kind: kindTooLarge, Message: "The request body is larger than " + strconv.Itoa(MaxBodyBytes) + " bytes."}
	}
	if err != nil {
		return nil, token.InvalidField("body", "the request body could not be read")
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && len(bytes.TrimSpace(raw)) > 0 && !isJSONMediaType(ct) {
		return nil, &token.Error{Kind: kindUnsupportedMediaType, Message: "The request body must be application/json.",
			Details: []token.Detail{{Field: "Content-Type", Message: "send Content-Type: application/json"}}}
	}
	return raw, nil
}

// isJSONMediaType accepts application/json and any application/*+json, with parameters.
func isJSONMediaType(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// decodeJSON parses a body strictly enough to give the client a useful 400: invalid UTF-8 is
// refused (encoding/json would silently replace it) and type errors name the field.
func decodeJSON(raw []byte, v any) error {
	if len(strings.TrimSpace(string(raw))) == 0 {
		return token.InvalidField("body", "the request body must not be empty")
	}
	if !utf8.Valid(raw) {
		return token.InvalidField("body", "the request body must be valid UTF-8")
	}
	if err := checkStrictJSON(raw); err != nil {
		return err
	}
	err := json.Unmarshal(raw, v)
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "body"
		}
		// Only the JSON kind of the wrong value is named ("number 123" would echo a value).
		got, _, _ := strings.Cut(typeErr.Value, " ")
		want := jsonType(typeErr.Type.Kind().String())
		if got == want {
			return token.InvalidField(field, field+" is out of range")
		}
		return token.InvalidField(field, field+" must be of type "+want+", not "+got)
	case errors.As(err, &syntaxErr):
		return token.InvalidField("body", "malformed JSON at byte "+strconv.FormatInt(syntaxErr.Offset, 10))
	default:
		return token.InvalidField("body", "malformed JSON")
	}
}

func jsonType(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "int", "int64", "float64":
		return "number"
	case "slice":
		return "array"
	case "struct", "map":
		return "object"
	case "bool":
		return "boolean"
	}
	return goKind
}
