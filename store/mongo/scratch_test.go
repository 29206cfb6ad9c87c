package mongo

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/FerretDB/FerretDB/ferretdb"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func TestScratch(t *testing.T) {
	dir := t.TempDir()
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Handler:   "sqlite",
		SQLiteURL: "file:" + dir + "/",
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.Run(ctx)
	uri := f.MongoDBURI()
	t.Log(uri)
	c, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(context.Background())
	var bi bson.M
	if err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&bi); err != nil {
		t.Fatal(err)
	}
	t.Logf("buildinfo version=%v ferretdb=%v", bi["version"], bi["ferretdb"])
	coll := c.Database("scratch").Collection("Obs")
	_, err = coll.Indexes().CreateMany(ctx, []mongo.IndexModel{
		{Keys: bson.D{{Key: "pat", Value: 1}, {Key: "tk", Value: 1}, {Key: "dt.date.lo", Value: 1}}, Options: options.Index().SetName("pat_tk_date")},
		{Keys: bson.D{{Key: "pat", Value: 1}, {Key: "sd", Value: -1}, {Key: "_id", Value: 1}}, Options: options.Index().SetName("pat_sd_id")},
	})
	t.Log("indexes:", err)
	_, err = coll.Indexes().CreateMany(ctx, []mongo.IndexModel{
		{Keys: bson.D{{Key: "pat", Value: 1}, {Key: "tk", Value: 1}, {Key: "dt.date.lo", Value: 1}}, Options: options.Index().SetName("pat_tk_date")},
	})
	t.Log("indexes again:", err)
	docs := []any{
		bson.D{{Key: "_id", Value: "a"}, {Key: "v", Value: int64(1)}, {Key: "pat", Value: "p1"}, {Key: "sd", Value: int64(10)}, {Key: "tk", Value: bson.A{"code|http://loinc.org|1", "code|x\\|y|2"}}, {Key: "dt", Value: bson.D{{Key: "date", Value: bson.D{{Key: "lo", Value: int64(10)}, {Key: "hi", Value: int64(20)}}}}}, {Key: "sn", Value: bson.A{"name|john", "name|jo|hn\nx"}}},
		bson.D{{Key: "_id", Value: "b"}, {Key: "v", Value: int64(1)}, {Key: "pat", Value: "p1"}, {Key: "sd", Value: int64(30)}, {Key: "tk", Value: bson.A{"code|http://loinc.org|2"}}, {Key: "dt", Value: bson.D{{Key: "date", Value: bson.D{{Key: "lo", Value: int64(30)}, {Key: "hi", Value: int64(40)}}}}}},
		bson.D{{Key: "_id", Value: "c"}, {Key: "v", Value: int64(1)}, {Key: "pat", Value: ""}, {Key: "sd", Value: int64(-5)}},
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	try := func(name string, filter any, sort any) {
		opts := options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}})
		if sort != nil {
			opts.SetSort(sort)
		}
		cur, err := coll.Find(ctx, filter, opts)
		if err != nil {
			t.Logf("%s: ERR %v", name, err)
			return
		}
		var out []bson.M
		if err := cur.All(ctx, &out); err != nil {
			t.Logf("%s: ERR all %v", name, err)
			return
		}
		var ids []any
		for _, d := range out {
			ids = append(ids, d["_id"])
		}
		t.Logf("%s: %v", name, ids)
	}
	try("eq-array", bson.D{{Key: "tk", Value: "code|http://loinc.org|1"}}, nil)             // a
	try("in-array", bson.D{{Key: "tk", Value: bson.D{{Key: "$in", Value: bson.A{"code|http://loinc.org|2", "zz"}}}}}, nil) // b
	try("regex-anysys", bson.D{{Key: "tk", Value: bson.D{{Key: "$regex", Value: `^code\|(?:[^\\|]|\\[\\|])*\|2\z`}}}}, nil) // a b
	try("regex-anycode", bson.D{{Key: "tk", Value: bson.D{{Key: "$regex", Value: `^code\|x\\\|y\|`}}}}, nil) // a
	try("contains", bson.D{{Key: "sn", Value: bson.D{{Key: "$regex", Value: `^name\|[\s\S]*hn`}}}}, nil) // a
	try("contains-nl", bson.D{{Key: "sn", Value: bson.D{{Key: "$regex", Value: `^name\|[\s\S]*x`}}}}, nil) // a
	try("nor", bson.D{{Key: "$nor", Value: bson.A{bson.D{{Key: "tk", Value: "code|http://loinc.org|1"}}}}}, nil) // b c
	try("nor-regex", bson.D{{Key: "$nor", Value: bson.A{bson.D{{Key: "tk", Value: bson.D{{Key: "$regex", Value: `^code\|`}}}}}}}, nil) // c
	try("exists", bson.D{{Key: "dt.date", Value: bson.D{{Key: "$exists", Value: true}}}}, nil) // a b
	try("range", bson.D{{Key: "dt.date.lo", Value: bson.D{{Key: "$gte", Value: int64(10)}}}, {Key: "dt.date.hi", Value: bson.D{{Key: "$lte", Value: int64(20)}}}}, nil) // a
	try("or-and", bson.D{{Key: "$and", Value: bson.A{bson.D{{Key: "$or", Value: bson.A{bson.D{{Key: "dt.date.hi", Value: bson.D{{Key: "$gt", Value: int64(35)}}}}, bson.D{{Key: "_id", Value: "a"}}}}}}}}, nil) // a b
	try("in-empty", bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{}}}}}, nil) // none
	try("sort", bson.D{}, bson.D{{Key: "pat", Value: 1}, {Key: "sd", Value: -1}, {Key: "_id", Value: 1}}) // c b a
	try("keyset", bson.D{{Key: "$or", Value: bson.A{bson.D{{Key: "sd", Value: bson.D{{Key: "$lt", Value: int64(30)}}}}, bson.D{{Key: "sd", Value: int64(30)}, {Key: "_id", Value: bson.D{{Key: "$gt", Value: "b"}}}}}}}, bson.D{{Key: "sd", Value: -1}, {Key: "_id", Value: 1}}) // a c
	try("in-regex", bson.D{{Key: "tk", Value: bson.D{{Key: "$in", Value: bson.A{bson.Regex{Pattern: `^code\|x`}, "code|http://loinc.org|2"}}}}}, nil)
	try("ne-true", bson.D{{Key: "del", Value: bson.D{{Key: "$ne", Value: true}}}}, nil)
	try("eq-false", bson.D{{Key: "del", Value: false}}, nil)
	try("int-vs-float", bson.D{{Key: "sd", Value: bson.D{{Key: "$gt", Value: 9.5}}}}, nil)
	try("elemMatch2", bson.D{{Key: "sub", Value: bson.D{{Key: "$elemMatch", Value: bson.D{{Key: "c", Value: "x"}, {Key: "s", Value: "y"}}}}}}, nil)
	try("elemMatch-or", bson.D{{Key: "sub", Value: bson.D{{Key: "$elemMatch", Value: bson.D{{Key: "$or", Value: bson.A{bson.D{{Key: "c", Value: "x"}}}}}}}}}, nil)
	n, err := coll.CountDocuments(ctx, bson.D{{Key: "pat", Value: "p1"}})
	t.Log("count", n, err)
	r, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "v", Value: int64(2)}}, bson.D{{Key: "_id", Value: "a"}, {Key: "v", Value: int64(3)}})
	t.Logf("replace miss %+v %v", r, err)
	bw, err := coll.BulkWrite(ctx, []mongo.WriteModel{
		mongo.NewInsertOneModel().SetDocument(bson.D{{Key: "_id", Value: "d"}}),
		mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: "a"}, {Key: "v", Value: int64(1)}}).SetReplacement(bson.D{{Key: "_id", Value: "a"}, {Key: "v", Value: int64(2)}, {Key: "pat", Value: "p1"}}),
		mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: "b"}, {Key: "v", Value: int64(9)}}).SetReplacement(bson.D{{Key: "_id", Value: "b"}, {Key: "v", Value: int64(10)}}),
		mongo.NewInsertOneModel().SetDocument(bson.D{{Key: "_id", Value: "a"}}),
		mongo.NewInsertOneModel().SetDocument(bson.D{{Key: "_id", Value: "e"}}),
	}, options.BulkWrite().SetOrdered(true))
	t.Logf("bulk %+v err=%v dup=%v", bw, err, mongo.IsDuplicateKeyError(err))
	try("after", bson.D{}, bson.D{{Key: "_id", Value: 1}})
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}})
	t.Logf("dup insert %v %v", err, mongo.IsDuplicateKeyError(err))
	var raw bson.Raw
	raw, err = coll.FindOne(ctx, bson.D{{Key: "_id", Value: "b"}}).Raw()
	t.Logf("raw %v %v", raw, err)
	err = coll.FindOne(ctx, bson.D{{Key: "_id", Value: "zz"}}).Err()
	t.Logf("nodoc %v %v", err, err == mongo.ErrNoDocuments)
}
