package googlehealth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/providers"
)

// AdminConfig configures project-level webhook administration.
type AdminConfig struct {
	// APIURL is the Google Health API host (default DefaultAPIURL).
	APIURL string
	// Project is the Google Cloud project id or number that owns the subscribers.
	Project string
	// TokenSource yields access tokens of a Google Cloud identity (a service account is
	// recommended) with a Google Health API Viewer/Editor/Admin role and the cloud-platform scope
	// (https://developers.google.com/health/webhooks) — not a patient's token.
	TokenSource oauth2.TokenSource
}

// Admin manages the project's webhook subscribers and, for MANUAL subscribers, the per-user
// subscriptions (https://developers.google.com/health/reference/rest/v4/projects.subscribers).
// It is safe for concurrent use. It never logs the endpoint secret.
type Admin struct {
	c       *Client // for do(); only its API URL and caller are used
	project string
	ts      oauth2.TokenSource
}

// NewAdmin returns the administration client. Every request goes through caller. It returns an
// error when the project or token source is missing or the API URL is invalid.
func NewAdmin(cfg AdminConfig, caller providers.Caller) (*Admin, error) {
	if caller == nil || cfg.TokenSource == nil {
		return nil, errors.New("googlehealth admin: a caller and a token source are required")
	}
	if cfg.Project == "" || strings.ContainsAny(cfg.Project, "/?#% ") {
		return nil, fmt.Errorf("googlehealth admin: invalid project %q", cfg.Project)
	}
	c, err := New(Config{ClientID: "admin", ClientSecret: "admin", RedirectURL: "https://admin.invalid/", APIURL: cfg.APIURL}, caller, nil)
	if err != nil {
		return nil, err
	}
	return &Admin{c: c, project: cfg.Project, ts: cfg.TokenSource}, nil
}

// resourceIDRE is the user-settable id of subscribers and subscriptions: 4–36 characters
// matching [a-z]([a-z0-9-]{2,34}[a-z0-9]) (the reference's Subscriber.name).
var resourceIDRE = regexp.MustCompile(`^[a-z][a-z0-9-]{2,34}[a-z0-9]$`)

// dataTypeRE is a kebab-case data type.
var dataTypeRE = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)

// Subscription policies (SubscriberConfig.SubscriptionCreatePolicy).
const (
	// PolicyAutomatic delivers every consenting user's changes without per-user subscriptions.
	PolicyAutomatic = "AUTOMATIC"
	// PolicyManual needs a subscription per user (CreateSubscription).
	PolicyManual = "MANUAL"
)

// SubscriberSpec is a subscriber to create or update.
type SubscriberSpec struct {
	// ID is the subscriber id (4–36 characters, [a-z]([a-z0-9-]{2,34}[a-z0-9])).
	ID string
	// EndpointURI is the public HTTPS webhook URL (…/webhooks/googlehealth).
	EndpointURI string
	// DataTypes are kebab-case data types (DataTypes gives them for a set of kinds).
	DataTypes []string
	// Policy is PolicyAutomatic or PolicyManual.
	Policy string
	// Secret is the complete Authorization header value Google will send ("Bearer <random>"),
	// which Config.WebhookSecret must equal. Required for create; for update, empty keeps the
	// current one.
	Secret string
}

// Subscriber is a subscriber as Google reports it (the secret is never returned).
type Subscriber struct {
	Name        string `json:"name"`
	EndpointURI string `json:"endpointUri"`
	State       string `json:"state"` // UNVERIFIED | ACTIVE | INACTIVE
	Configs     []struct {
		DataTypes []string `json:"dataTypes"`
		Policy    string   `json:"subscriptionCreatePolicy"`
	} `json:"subscriberConfigs"`
}

// Subscription is a per-user subscription of a MANUAL subscriber.
type Subscription struct {
	Name      string   `json:"name"`
	User      string   `json:"user"` // users/{healthUserId}
	DataTypes []string `json:"dataTypes"`
}

// Operation is the long-running operation subscriber changes return.
type Operation struct {
	Name string `json:"name"`
	Done bool   `json:"done"`
}

type operationAnswer struct {
	Operation
	Error *struct {
		Code int `json:"code"`
	} `json:"error"`
}

type subscriberPayload struct {
	EndpointURI       string                  `json:"endpointUri,omitempty"`
	SubscriberConfigs []subscriberConfigJSON  `json:"subscriberConfigs,omitempty"`
	Authorization     *endpointAuthorizationJ `json:"endpointAuthorization,omitempty"`
}

type subscriberConfigJSON struct {
	DataTypes []string `json:"dataTypes"`
	Policy    string   `json:"subscriptionCreatePolicy"`
}

type endpointAuthorizationJ struct {
	Secret string `json:"secret"`
}

func (s SubscriberSpec) validate(create bool) error {
	if !resourceIDRE.MatchString(s.ID) {
		return errors.New("subscriber id must be 4–36 characters matching [a-z]([a-z0-9-]{2,34}[a-z0-9])")
	}
	u, err := url.Parse(s.EndpointURI)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return errors.New("subscriber endpoint must be an https URL")
	}
	if len(s.DataTypes) == 0 {
		return errors.New("subscriber needs at least one data type")
	}
	for _, d := range s.DataTypes {
		if !dataTypeRE.MatchString(d) {
			return fmt.Errorf("data type %q is not kebab-case", d)
		}
	}
	if s.Policy != PolicyAutomatic && s.Policy != PolicyManual {
		return fmt.Errorf("policy %q is neither AUTOMATIC nor MANUAL", s.Policy)
	}
	// The secret is the whole Authorization header value, scheme included.
	if create && s.Secret == "" {
		return errors.New("subscriber secret is required")
	}
	if s.Secret != "" {
		scheme, cred, ok := strings.Cut(s.Secret, " ")
		if !ok || scheme == "" || strings.TrimSpace(cred) == "" {
			return errors.New(`subscriber secret must be a complete Authorization value such as "Bearer <random>"`)
		}
	}
	return nil
}

func (s SubscriberSpec) payload() subscriberPayload {
	p := subscriberPayload{
		EndpointURI:       s.EndpointURI,
		SubscriberConfigs: []subscriberConfigJSON{{DataTypes: append([]string(nil), s.DataTypes...), Policy: s.Policy}},
	}
	if s.Secret != "" {
		p.Authorization = &endpointAuthorizationJ{Secret: s.Secret}
	}
	return p
}

func (a *Admin) subscribersPath() string {
	return "/v4/projects/" + url.PathEscape(a.project) + "/subscribers"
}

func (a *Admin) call(ctx context.Context, endpoint, method, path string, q url.Values, body any, v any) error {
	b, err := a.c.do(ctx, apiRequest{endpoint: endpoint, method: method, path: path, query: q, body: body, ts: a.ts})
	if err != nil {
		return err
	}
	if v == nil || len(strings.TrimSpace(string(b))) == 0 {
		return nil
	}
	return decode(b, v, endpoint)
}

func operationResult(op operationAnswer) (Operation, error) {
	if op.Error != nil {
		// FailedPrecondition (9) is the failed endpoint verification.
		return op.Operation, upstream(providers.KindPermanent, http.StatusOK, fmt.Errorf("operation failed with code %d", op.Error.Code))
	}
	return op.Operation, nil
}

// CreateSubscriber registers the subscriber (POST /v4/projects/{project}/subscribers?subscriberId=…).
// Google verifies the endpoint during the call (two POSTs, answered by HandleWebhook). Errors are
// a validation error (nothing sent) or *providers.UpstreamError.
func (a *Admin) CreateSubscriber(ctx context.Context, s SubscriberSpec) (Operation, error) {
	if err := s.validate(true); err != nil {
		return Operation{}, fmt.Errorf("googlehealth admin: %w", err)
	}
	var op operationAnswer
	if err := a.call(ctx, "subscribers/create", http.MethodPost, a.subscribersPath(), url.Values{"subscriberId": {s.ID}}, s.payload(), &op); err != nil {
		return Operation{}, err
	}
	return operationResult(op)
}

// UpdateSubscriber replaces the subscriber's endpoint, data types and policy, and its secret when
// s.Secret is set (PATCH …/subscribers/{id}?updateMask=…). Google re-verifies the endpoint.
func (a *Admin) UpdateSubscriber(ctx context.Context, s SubscriberSpec) (Operation, error) {
	if err := s.validate(false); err != nil {
		return Operation{}, fmt.Errorf("googlehealth admin: %w", err)
	}
	mask := "endpoint_uri,subscriber_configs"
	if s.Secret != "" {
		mask += ",endpoint_authorization"
	}
	var op operationAnswer
	if err := a.call(ctx, "subscribers/patch", http.MethodPatch, a.subscribersPath()+"/"+s.ID, url.Values{"updateMask": {mask}}, s.payload(), &op); err != nil {
		return Operation{}, err
	}
	return operationResult(op)
}

// maxAdminPages bounds listings.
const maxAdminPages = 100

// ListSubscribers lists the project's subscribers, following nextPageToken.
func (a *Admin) ListSubscribers(ctx context.Context) ([]Subscriber, error) {
	var out []Subscriber
	token := ""
	for range maxAdminPages {
		q := url.Values{"pageSize": {"1000"}}
		if token != "" {
			q.Set("pageToken", token)
		}
		var page struct {
			Subscribers   []Subscriber `json:"subscribers"`
			NextPageToken string       `json:"nextPageToken"`
		}
		if err := a.call(ctx, "subscribers/list", http.MethodGet, a.subscribersPath(), q, nil, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Subscribers...)
		if page.NextPageToken == "" || page.NextPageToken == token {
			return out, nil
		}
		token = page.NextPageToken
	}
	return nil, upstream(providers.KindPermanent, http.StatusOK, errors.New("subscriber listing did not end"))
}

// DeleteSubscriber deletes a subscriber; force also deletes its subscriptions.
func (a *Admin) DeleteSubscriber(ctx context.Context, id string, force bool) (Operation, error) {
	if !resourceIDRE.MatchString(id) {
		return Operation{}, errors.New("googlehealth admin: invalid subscriber id")
	}
	var q url.Values
	if force {
		q = url.Values{"force": {"true"}}
	}
	var op operationAnswer
	if err := a.call(ctx, "subscribers/delete", http.MethodDelete, a.subscribersPath()+"/"+id, q, nil, &op); err != nil {
		return Operation{}, err
	}
	return operationResult(op)
}

// subscriptionDataTypes writes data types as the reference's Subscription.dataTypes describes
// them, "users/{health_user_id}/dataTypes/{data_type}"
// (https://developers.google.com/health/reference/rest/v4/projects.subscribers.subscriptions).
// ⚠ CreateSubscriptionPayload documents no format of its own; kebab names are what the
// subscriber takes — check against a live project.
func subscriptionDataTypes(user string, types []string) ([]string, error) {
	out := make([]string, 0, len(types))
	for _, d := range types {
		if !dataTypeRE.MatchString(d) {
			return nil, fmt.Errorf("data type %q is not kebab-case", d)
		}
		out = append(out, "users/"+user+"/dataTypes/"+d)
	}
	return out, nil
}

// CreateSubscription subscribes one user to data types of a MANUAL subscriber
// (POST …/subscribers/{id}/subscriptions with {"user": "users/{healthUserId}", "dataTypes": …}).
func (a *Admin) CreateSubscription(ctx context.Context, subscriberID, healthUserID string, dataTypes []string) (Subscription, error) {
	if !resourceIDRE.MatchString(subscriberID) || !userIDRE.MatchString(healthUserID) || len(dataTypes) == 0 {
		return Subscription{}, errors.New("googlehealth admin: invalid subscriber id, health user id or data types")
	}
	types, err := subscriptionDataTypes(healthUserID, dataTypes)
	if err != nil {
		return Subscription{}, fmt.Errorf("googlehealth admin: %w", err)
	}
	body := struct {
		User      string   `json:"user"`
		DataTypes []string `json:"dataTypes"`
	}{User: "users/" + healthUserID, DataTypes: types}
	var sub Subscription
	err = a.call(ctx, "subscriptions/create", http.MethodPost, a.subscribersPath()+"/"+subscriberID+"/subscriptions", nil, body, &sub)
	return sub, err
}

// ListSubscriptions lists a subscriber's subscriptions; healthUserID, when set, filters by user
// (AIP-160 filter user = "users/{healthUserId}").
func (a *Admin) ListSubscriptions(ctx context.Context, subscriberID, healthUserID string) ([]Subscription, error) {
	if !resourceIDRE.MatchString(subscriberID) || (healthUserID != "" && !userIDRE.MatchString(healthUserID)) {
		return nil, errors.New("googlehealth admin: invalid subscriber id or health user id")
	}
	var out []Subscription
	token := ""
	for range maxAdminPages {
		q := url.Values{"pageSize": {"1000"}}
		if healthUserID != "" {
			q.Set("filter", fmt.Sprintf("user = %q", "users/"+healthUserID))
		}
		if token != "" {
			q.Set("pageToken", token)
		}
		var page struct {
			Subscriptions []Subscription `json:"subscriptions"`
			NextPageToken string         `json:"nextPageToken"`
		}
		if err := a.call(ctx, "subscriptions/list", http.MethodGet, a.subscribersPath()+"/"+subscriberID+"/subscriptions", q, nil, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Subscriptions...)
		if page.NextPageToken == "" || page.NextPageToken == token {
			return out, nil
		}
		token = page.NextPageToken
	}
	return nil, upstream(providers.KindPermanent, http.StatusOK, errors.New("subscription listing did not end"))
}

// DeleteSubscription deletes one subscription (DELETE …/subscribers/{id}/subscriptions/{sid}).
func (a *Admin) DeleteSubscription(ctx context.Context, subscriberID, subscriptionID string) error {
	if !resourceIDRE.MatchString(subscriberID) || !resourceIDRE.MatchString(subscriptionID) {
		return errors.New("googlehealth admin: invalid subscriber or subscription id")
	}
	return a.call(ctx, "subscriptions/delete", http.MethodDelete, a.subscribersPath()+"/"+subscriberID+"/subscriptions/"+subscriptionID, nil, nil, nil)
}
