package main

// wMeasure and wGroup are the measure groups of Withings' Measure - Getmeas answer
// (https://developer.withings.com/api-reference/#tag/measure/operation/measure-getmeas), as the
// bench's fake Withings servers send them.
type wMeasure struct {
	Value int `json:"value"`
	Type  int `json:"type"`
	Unit  int `json:"unit"`
}

type wGroup struct {
	GrpID    int64      `json:"grpid"`
	Attrib   int        `json:"attrib"`
	Date     int64      `json:"date"`
	Created  int64      `json:"created"`
	Modified int64      `json:"modified"`
	Category int        `json:"category"`
	DeviceID string     `json:"deviceid"`
	Model    string     `json:"model,omitempty"`
	Measures []wMeasure `json:"measures"`
}
