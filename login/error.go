package login

import (
	"errors"
	"fmt"
	"time"
)

// Error codes, shown to clients as the "error" field. handlers maps each to an
// HTTP status in one table.
const (
	EINVALID      = "invalid"
	EUNAUTHORIZED = "unauthorized"
	ENOTFOUND     = "not_found"
	ECONFLICT     = "conflict"
	ESLOWDOWN     = "slow_down"
	ERATELIMITED  = "rate_limited"
	ETOOLARGE     = "too_large"
	ETOOMANY      = "too_many_streams"
	EUNAVAILABLE  = "unavailable"
	EWECHAT       = "wechat_unavailable"
	EQUOTA        = "wechat_quota"
	EFORBIDDEN    = "forbidden"
	EINTERNAL     = "internal"
)

// Error is a domain error with a machine code and a message safe to show.
type Error struct {
	Code       string
	Message    string
	RetryAfter time.Duration // for slow_down and rate_limited
	Err        error         // the cause, for logs; never shown
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrNotFound is returned by stores for a missing record.
var ErrNotFound = &Error{Code: ENOTFOUND, Message: "not found"}

// ErrUnavailable wraps a storage failure so clients see 503.
func ErrUnavailable(op string, err error) *Error {
	return &Error{Code: EUNAVAILABLE, Message: "storage unavailable", Err: fmt.Errorf("%s: %w", op, err)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL otherwise.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err == nil {
		return ""
	}
	return EINTERNAL
}

// ErrorMessage returns the client-safe message of err.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
