package certstore

// ParsePair lets the external tests (TestUpdateRejects, FuzzParsePair)
// reach the pair parser that Update and Current share.
var ParsePair = parsePair
