package fitbitsim

import "strconv"

// formatFloat writes a value that has been rounded to its resolution in the shortest form that
// reads back as the same float ("6.1234", "2112"), as encoding/json writes numbers.
func formatFloat(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

func itoa(n int) string { return strconv.Itoa(n) }
