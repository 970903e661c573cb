package handlers

import (
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"wxlogin/login"
)

// statusOf is the one table from error code to HTTP status.
var statusOf = map[string]int{
	login.EINVALID:      http.StatusBadRequest,
	login.EUNAUTHORIZED: http.StatusUnauthorized,
	login.EFORBIDDEN:    http.StatusForbidden,
	login.ENOTFOUND:     http.StatusNotFound,
	login.ECONFLICT:     http.StatusConflict,
	login.ETOOLARGE:     http.StatusRequestEntityTooLarge,
	login.ESLOWDOWN:     http.StatusTooManyRequests,
	login.ERATELIMITED:  http.StatusTooManyRequests,
	login.ETOOMANY:      http.StatusTooManyRequests,
	login.EUNAVAILABLE:  http.StatusServiceUnavailable,
	login.EWECHAT:       http.StatusServiceUnavailable,
	login.EQUOTA:        http.StatusServiceUnavailable,
	login.EINTERNAL:     http.StatusInternalServerError,
}

// codeOfStatus names Echo's own errors (404 route, 405, 413 body limit).
var codeOfStatus = map[int]string{
	http.StatusBadRequest:            login.EINVALID,
	http.StatusUnauthorized:          login.EUNAUTHORIZED,
	http.StatusForbidden:             login.EFORBIDDEN,
	http.StatusNotFound:              login.ENOTFOUND,
	http.StatusMethodNotAllowed:      "method_not_allowed",
	http.StatusRequestTimeout:        "request_timeout",
	http.StatusRequestEntityTooLarge: login.ETOOLARGE,
	http.StatusTooManyRequests:       login.ERATELIMITED,
	http.StatusServiceUnavailable:    login.EUNAVAILABLE,
}

// ErrorBody is every error answer: {"error": code, "message": text}.
type ErrorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// errorHandler writes every error in the one JSON shape of the contract.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		status, body := errorResponse(err)
		var le *login.Error
		if errors.As(err, &le) && le.RetryAfter > 0 {
			secs := int(math.Ceil(le.RetryAfter.Seconds()))
			c.Response().Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		}
		// WeChat's quota error is logged by the WeChat client at most once a
		// minute; logging it here too would log it per request.
		if status >= 500 && login.ErrorCode(err) != login.EQUOTA {
			log.Error("request failed", "path", c.Path(), "status", status, "err", err)
		}
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(status)
			return
		}
		_ = c.JSON(status, body)
	}
}

func errorResponse(err error) (int, ErrorBody) {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		code, ok := codeOfStatus[he.Code]
		if !ok {
			code = login.EINTERNAL
		}
		msg := http.StatusText(he.Code)
		if m, ok := he.Message.(string); ok && he.Code < 500 {
			msg = m
		}
		return he.Code, ErrorBody{Error: code, Message: msg}
	}
	code := login.ErrorCode(err)
	status, ok := statusOf[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	return status, ErrorBody{Error: code, Message: login.ErrorMessage(err)}
}
