package wechat

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/silenceper/wechat/v2/officialaccount/message"
	"github.com/silenceper/wechat/v2/util"

	"wxlogin/internal/random"
)

// Simulator plays WeChat's servers: it sends correctly signed callbacks, in
// plain or safe (AES) mode, over HTTP, to a wxlogin webhook. Demo mode's
// "simulate scan" and the tests use it; it is the path real WeChat takes.
type Simulator struct {
	URL       string // the webhook, e.g. http://127.0.0.1:8080/wechat/callback
	Token     string
	AppID     string
	AESKey    string // non-empty: send in safe mode
	AccountID string // the Official Account's id (ToUserName), e.g. gh_demo
	Client    *http.Client
}

// Event is one WeChat push: an event, or with MsgType "text" a text message.
type Event struct {
	OpenID     string
	MsgType    string // "" = event
	Event      string // subscribe, SCAN, unsubscribe
	EventKey   string
	Content    string // a text message's text
	CreateTime time.Time
	MsgID      int64
}

// TextMessage is a text message from openID, such as a login code.
// WeChat gives every message a MsgId; retries carry the same one.
func TextMessage(openID, content string, msgID int64, at time.Time) Event {
	return Event{OpenID: openID, MsgType: "text", Content: content, MsgID: msgID, CreateTime: at}
}

// ScanEvent is the push for a scan of sceneID: SCAN for a follower,
// subscribe with qrscene_ for a first follow.
func ScanEvent(sceneID, openID string, firstFollow bool, at time.Time) Event {
	if firstFollow {
		return Event{OpenID: openID, Event: "subscribe", EventKey: "qrscene_" + sceneID, CreateTime: at}
	}
	return Event{OpenID: openID, Event: "SCAN", EventKey: sceneID, CreateTime: at}
}

type eventXML struct {
	XMLName      xml.Name      `xml:"xml"`
	ToUserName   message.CDATA `xml:"ToUserName"`
	FromUserName message.CDATA `xml:"FromUserName"`
	CreateTime   int64         `xml:"CreateTime"`
	MsgType      message.CDATA `xml:"MsgType"`
	Event        message.CDATA `xml:"Event,omitempty"`
	EventKey     message.CDATA `xml:"EventKey,omitempty"`
	Content      message.CDATA `xml:"Content,omitempty"`
	MsgID        int64         `xml:"MsgId,omitempty"`
}

// Reply is what the webhook answered.
type Reply struct {
	Status int
	Body   string // raw body
	Text   string // the text message's content, decrypted in safe mode; "" for success
}

// Send delivers ev, signed with the current time, and returns the answer.
func (s *Simulator) Send(ctx context.Context, ev Event) (Reply, error) {
	req, err := s.Request(ctx, ev, time.Now())
	if err != nil {
		return Reply{}, err
	}
	return s.Do(req)
}

// Request builds the signed HTTP request WeChat would send at time at.
func (s *Simulator) Request(ctx context.Context, ev Event, at time.Time) (*http.Request, error) {
	msgType := ev.MsgType
	if msgType == "" {
		msgType = "event"
	}
	raw, err := xml.Marshal(eventXML{
		ToUserName:   message.CDATA(s.accountID()),
		FromUserName: message.CDATA(ev.OpenID),
		CreateTime:   ev.CreateTime.Unix(),
		MsgType:      message.CDATA(msgType),
		Event:        message.CDATA(ev.Event),
		EventKey:     message.CDATA(ev.EventKey),
		Content:      message.CDATA(ev.Content),
		MsgID:        ev.MsgID,
	})
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	timestamp := strconv.FormatInt(at.Unix(), 10)
	nonce := random.String(10)
	q := url.Values{}
	q.Set("signature", util.Signature(s.Token, timestamp, nonce))
	q.Set("timestamp", timestamp)
	q.Set("nonce", nonce)
	q.Set("openid", ev.OpenID)
	body := raw
	if s.AESKey != "" {
		random := []byte(random.String(16))
		enc, err := util.EncryptMsg(random, raw, s.AppID, s.AESKey)
		if err != nil {
			return nil, fmt.Errorf("encrypt event: %w", err)
		}
		body, err = xml.Marshal(message.EncryptedXMLMsg{ToUserName: s.accountID(), EncryptedMsg: string(enc)})
		if err != nil {
			return nil, err
		}
		q.Set("encrypt_type", "aes")
		q.Set("msg_signature", util.Signature(s.Token, timestamp, nonce, string(enc)))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"?"+q.Encode(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "text/xml")
	return req, nil
}

// Do sends a request built by Request and reads the reply.
func (s *Simulator) Do(req *http.Request) (Reply, error) {
	hc := s.Client
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Reply{}, fmt.Errorf("send callback: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Reply{}, fmt.Errorf("read callback reply: %w", err)
	}
	r := Reply{Status: resp.StatusCode, Body: string(b)}
	if resp.StatusCode != http.StatusOK || r.Body == "success" || r.Body == "" {
		return r, nil
	}
	r.Text, err = s.replyText(b)
	return r, err
}

func (s *Simulator) replyText(b []byte) (string, error) {
	if s.AESKey != "" {
		var env message.ResponseEncryptedXMLMsg
		if err := xml.Unmarshal(b, &env); err != nil {
			return "", fmt.Errorf("decode encrypted reply: %w", err)
		}
		want := util.Signature(s.Token, strconv.FormatInt(env.Timestamp, 10), env.Nonce, env.EncryptedMsg)
		if want != env.MsgSignature {
			return "", fmt.Errorf("encrypted reply has a bad signature")
		}
		_, plain, err := util.DecryptMsg(s.AppID, env.EncryptedMsg, s.AESKey)
		if err != nil {
			return "", fmt.Errorf("decrypt reply: %w", err)
		}
		b = plain
	}
	var text message.Text
	if err := xml.Unmarshal(b, &text); err != nil {
		return "", fmt.Errorf("decode reply: %w", err)
	}
	return string(text.Content), nil
}

func (s *Simulator) accountID() string {
	if s.AccountID == "" {
		return "gh_wxlogin_demo"
	}
	return s.AccountID
}

// RandomOpenID returns an openid-shaped random string (demo users).
func RandomOpenID() string { return "o" + random.String(27) }
