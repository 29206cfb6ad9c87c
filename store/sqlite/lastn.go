package sqlite

import (
	"context"
	"fmt"

	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// nextCodingSQL is one step of the skip-scan over obs_clinical's primary key (patient, system,
// code, sort_date, id): the first coding of the patient after (system, code) — the next code of
// the same system, else the first code of the next system — each arm one seek, the second run
// only when the first finds nothing. SQLite does not skip-scan by itself without ANALYZE
// statistics, and a row-value range (system, code) > (?, ?) seeks on system alone, reading every
// row of the earlier codes of that system again at each step.
const nextCodingSQL = `SELECT system, code FROM (
	SELECT * FROM (SELECT system, code FROM obs_clinical WHERE patient = ?1 AND system = ?2 AND code > ?3 ORDER BY code LIMIT 1)
	UNION ALL
	SELECT * FROM (SELECT system, code FROM obs_clinical WHERE patient = ?1 AND system > ?2 ORDER BY system, code LIMIT 1)
) LIMIT 1`

// LastN implements store.Store. The codings come from the skip-scan (or the query's code
// clause); each group is the hot search of plan — one range of obs_clinical's primary key read
// backwards, newest first — stopped after n rows.
func (s *Store) LastN(ctx context.Context, q *search.Query, n int) ([]store.CodeGroup, error) {
	// Chained filters (device.identifier=…) become plain clauses first, as in Search.
	q, err := s.resolveChains(ctx, q)
	if err != nil {
		return nil, err
	}
	lq, err := store.SplitLastN(q)
	if err != nil {
		return nil, fmt.Errorf("sqlite: lastn: %w", err)
	}
	if err := s.resolveFilter(ctx, &lq); err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, fmt.Errorf("sqlite: lastn: n = %d", n)
	}
	codings := lq.Named
	if codings == nil {
		if codings, err = s.patientCodings(ctx, lq.Patient); err != nil {
			return nil, err
		}
	}
	var out []store.CodeGroup
	for _, c := range codings {
		gq := lq.GroupQuery(s.reg, c, n)
		b, order, err := s.groupPlan(gq)
		if err != nil {
			return nil, err
		}
		rows, err := s.fetch(ctx, b, gq, order, n)
		if err != nil {
			return nil, err
		}
		if len(rows) == 0 {
			continue
		}
		g := store.CodeGroup{Coding: c, Entries: make([]store.Entry, len(rows))}
		for i, r := range rows {
			g.Entries[i] = r.Entry
		}
		out = append(out, g)
	}
	return out, nil
}

// groupPlan plans one LastN group: always the hot path, since the group query has the patient
// and one exact coding.
func (s *Store) groupPlan(gq *search.Query) (*sqlQuery, string, error) {
	b := s.plan(gq)
	if !b.hot {
		return nil, "", fmt.Errorf("sqlite: lastn: the group query is not on obs_clinical")
	}
	order, err := b.orderAndCursor(gq, nil, false)
	if err != nil {
		return nil, "", err
	}
	return b, order, nil
}

// patientCodings lists the distinct codings of the patient's Observations in (system, code)
// order, one primary-key seek each.
func (s *Store) patientCodings(ctx context.Context, patient string) ([]store.Coding, error) {
	var out []store.Coding
	var last store.Coding // ("", "") sorts before every coding: codes are never empty
	for {
		rs, err := s.query(ctx, nextCodingSQL, patient, last.System, last.Code)
		if err != nil {
			return nil, fmt.Errorf("sqlite: lastn codings: %w", err)
		}
		found := rs.Next()
		if found {
			err = rs.Scan(&last.System, &last.Code)
		}
		if err == nil {
			err = rs.Err()
		}
		rs.Close()
		if err != nil {
			return nil, fmt.Errorf("sqlite: lastn codings: %w", err)
		}
		if !found {
			return out, nil
		}
		out = append(out, last)
	}
}

// resolveFilter gives the tokens of lq's filter their systems (resolveSystems), once for every
// group, and only after SplitLastN: a code clause without a system filters the matches, where
// one with systems would name the groups.
func (s *Store) resolveFilter(ctx context.Context, lq *store.LastNQuery) error {
	filter, err := s.resolveSystems(ctx, &search.Query{Type: "Observation", Clauses: lq.Clauses})
	if err != nil {
		return err
	}
	lq.Clauses = filter.Clauses
	return nil
}

// LastNSQL returns the statements LastN runs for the group of coding c and for one step of the
// skip-scan, for query-plan tests.
func (s *Store) LastNSQL(ctx context.Context, q *search.Query, c store.Coding, n int) (group string, groupArgs []any, step string, err error) {
	lq, err := store.SplitLastN(q)
	if err != nil {
		return "", nil, "", err
	}
	if err := s.resolveFilter(ctx, &lq); err != nil {
		return "", nil, "", err
	}
	gq := lq.GroupQuery(s.reg, c, n)
	b, order, err := s.groupPlan(gq)
	if err != nil {
		return "", nil, "", err
	}
	return s.selectSQL(b, gq, order), append(b.args, n), nextCodingSQL, nil
}
