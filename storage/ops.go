package storage

import (
	"encoding/binary"
	"errors"
)

// op is one change to one record: the unit of a journal record's payload.
type op struct {
	bucket uint8
	key    string
	val    []byte // the new value of a put (never nil for a put)
	del    bool
}

// encodeOps is a journal record's payload: per op its bucket, a kind (1 put,
// 2 delete), the key and, for a put, the value, lengths as uvarints.
func encodeOps(ops []op) []byte {
	n := 0
	for _, o := range ops {
		n += 2 + 2*binary.MaxVarintLen32 + len(o.key) + len(o.val)
	}
	p := make([]byte, 0, n)
	for _, o := range ops {
		kind := byte(1)
		if o.del {
			kind = 2
		}
		p = append(p, o.bucket, kind)
		p = binary.AppendUvarint(p, uint64(len(o.key)))
		p = append(p, o.key...)
		if !o.del {
			p = binary.AppendUvarint(p, uint64(len(o.val)))
			p = append(p, o.val...)
		}
	}
	return p
}

var errBadRecord = errors.New("malformed journal record")

// decodeOps parses a payload written by encodeOps. Values are copied.
func decodeOps(p []byte) ([]op, error) {
	var ops []op
	field := func() ([]byte, error) {
		n, w := binary.Uvarint(p)
		if w <= 0 || n > uint64(len(p)-w) {
			return nil, errBadRecord
		}
		f := p[w : w+int(n)]
		p = p[w+int(n):]
		return f, nil
	}
	for len(p) > 0 {
		if len(p) < 2 || int(p[0]) >= len(allBuckets) || (p[1] != 1 && p[1] != 2) {
			return nil, errBadRecord
		}
		o := op{bucket: p[0], del: p[1] == 2}
		p = p[2:]
		key, err := field()
		if err != nil {
			return nil, err
		}
		o.key = string(key)
		if !o.del {
			val, err := field()
			if err != nil {
				return nil, err
			}
			o.val = append([]byte{}, val...)
		}
		ops = append(ops, o)
	}
	return ops, nil
}
