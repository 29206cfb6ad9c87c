package fitbitsim

import (
	"net/http"
	"regexp"
	"strings"
)

// Subscription collections and the scope each needs
// (https://dev.fitbit.com/build/reference/web-api/subscription/create-subscription/);
// userRevokedAccess needs none.
var collectionScope = map[string]string{
	"activities": "activity", "body": "weight", "foods": "nutrition", "sleep": "sleep", "userRevokedAccess": "",
}

// collectionOrder lists the collections in a stable order (listings, the all-collections form).
var collectionOrder = []string{"activities", "body", "foods", "sleep", "userRevokedAccess"}

// subscriptionID is what Fitbit accepts as a subscription id: up to 50 characters of letters,
// digits, "-" and "_".
var subscriptionID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,50}$`)

// subKey is a subscription's (user, collection).
type subKey struct{ user, collection string }

type subscriptionJSON struct {
	CollectionType string `json:"collectionType"`
	OwnerID        string `json:"ownerId"`
	OwnerType      string `json:"ownerType"`
	SubscriberID   string `json:"subscriberId"`
	SubscriptionID string `json:"subscriptionId"`
}

// subscriber checks X-Fitbit-Subscriber-Id: absent means the app's default subscriber (ours),
// another id is unknown.
func (s *Simulator) subscriber(w http.ResponseWriter, r *http.Request) bool {
	if id := r.Header.Get("X-Fitbit-Subscriber-Id"); id != "" && id != s.cfg.SubscriberID {
		validation(w, "X-Fitbit-Subscriber-Id", "The subscriber id is not one of the application's subscribers.")
		return false
	}
	return true
}

// collections resolves the {collection} of a path: one collection, or every collection the
// token's scopes allow when the path has none.
func (s *Simulator) collections(w http.ResponseWriter, r *http.Request, c call) ([]string, bool) {
	col := r.PathValue("collection")
	if col == "" {
		var out []string
		for _, x := range collectionOrder {
			if hasScope(c.scopes, collectionScope[x]) {
				out = append(out, x)
			}
		}
		return out, true
	}
	scope, ok := collectionScope[col]
	if !ok {
		validation(w, "collectionPath", "Invalid collection path: "+col+".")
		return nil, false
	}
	if !hasScope(c.scopes, scope) {
		fail(w, http.StatusForbidden, "insufficient_scope", "n/a", "This application does not have permission to access "+scope+" data.")
		return nil, false
	}
	return []string{col}, true
}

// createSubscription is POST /1/user/-/[{collection}/]apiSubscriptions/{id}.json: 201 with the
// subscription, 200 when it exists under that id, 409 when the collection is subscribed under
// another id.
func (s *Simulator) createSubscription(w http.ResponseWriter, r *http.Request, c call) {
	id := strings.TrimSuffix(r.PathValue("id"), ".json")
	if !subscriptionID.MatchString(id) {
		validation(w, "subscriptionId", "Invalid subscription id.")
		return
	}
	if !s.subscriber(w, r) {
		return
	}
	cols, ok := s.collections(w, r, c)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	status := http.StatusOK
	for _, col := range cols {
		switch have, ok := s.subs[subKey{c.user, col}]; {
		case ok && have != id:
			fail(w, http.StatusConflict, "conflict", "n/a", "This user is already subscribed to the "+col+" collection under another subscription id.")
			return
		case !ok:
			status = http.StatusCreated
		}
	}
	for _, col := range cols {
		s.subs[subKey{c.user, col}] = id
	}
	col := r.PathValue("collection")
	if col == "" {
		col = "user"
	}
	writeJSON(w, status, subscriptionJSON{CollectionType: col, OwnerID: c.user, OwnerType: "user", SubscriberID: s.cfg.SubscriberID, SubscriptionID: id})
}

// listSubscriptions is GET /1/user/-/[{collection}/]apiSubscriptions.json.
func (s *Simulator) listSubscriptions(w http.ResponseWriter, r *http.Request, c call) {
	if !s.subscriber(w, r) {
		return
	}
	col := r.PathValue("collection")
	if _, ok := collectionScope[col]; col != "" && !ok {
		validation(w, "collectionPath", "Invalid collection path: "+col+".")
		return
	}
	out := []subscriptionJSON{}
	s.mu.Lock()
	for _, x := range collectionOrder {
		if id, ok := s.subs[subKey{c.user, x}]; ok && (col == "" || col == x) {
			out = append(out, subscriptionJSON{CollectionType: x, OwnerID: c.user, OwnerType: "user", SubscriberID: s.cfg.SubscriberID, SubscriptionID: id})
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string][]subscriptionJSON{"apiSubscriptions": out})
}

// deleteSubscription is DELETE /1/user/-/[{collection}/]apiSubscriptions/{id}.json: 204, or 404
// when no such subscription exists.
func (s *Simulator) deleteSubscription(w http.ResponseWriter, r *http.Request, c call) {
	id := strings.TrimSuffix(r.PathValue("id"), ".json")
	if !s.subscriber(w, r) {
		return
	}
	col := r.PathValue("collection")
	if _, ok := collectionScope[col]; col != "" && !ok {
		validation(w, "collectionPath", "Invalid collection path: "+col+".")
		return
	}
	s.mu.Lock()
	var gone []string
	for _, x := range collectionOrder {
		if have, ok := s.subs[subKey{c.user, x}]; ok && have == id && (col == "" || col == x) {
			gone = append(gone, x)
		}
	}
	for _, x := range gone {
		delete(s.subs, subKey{c.user, x})
	}
	s.mu.Unlock()
	if len(gone) == 0 {
		fail(w, http.StatusNotFound, "not_found", "n/a", "The subscription does not exist.")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// subscribedLocked reports a user's subscription to a collection and its id.
func (s *Simulator) subscribedLocked(user, col string) (string, bool) {
	id, ok := s.subs[subKey{user, col}]
	return id, ok
}
