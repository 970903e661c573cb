package main

// README.zh-CN.md is a translation of README.md. The prose cannot be compared
// by a program, but the parts a translation keeps unchanged can: the outline
// of headings, the code blocks (commands and code are not translated) and the
// environment variables the text documents. TestDocsREADMEsInStep fails as
// soon as one README gains a section, a code block or a setting that the
// other lacks, so an edit is mirrored section by section.

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// markdownOutline is what two translations of one document share.
type markdownOutline struct {
	headings   []markdownHeading
	codeBlocks []markdownCodeBlock
	envVars    []string // sorted, each once
}

type markdownHeading struct {
	level int // 1 for "#", 2 for "##", …
	text  string
	line  int
}

type markdownCodeBlock struct {
	text    string // the block's lines, fences included, exactly as written
	line    int    // line of the opening fence
	heading string // the heading the block sits under, to find it in a report
}

var (
	atxHeading = regexp.MustCompile(`^(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$`)
	// An environment variable name; a trailing underscore (as in "WXLOGIN_*")
	// is a pattern, not a name.
	envVarName = regexp.MustCompile(`\b(?:WXLOGIN|WECHAT)_[A-Z0-9_]*[A-Z0-9]`)
)

// parseMarkdownOutline reads ATX headings outside code blocks, fenced code
// blocks (``` or ~~~, possibly indented, as in a list item) and the
// environment variable names anywhere in the text.
func parseMarkdownOutline(src string) (markdownOutline, error) {
	var out markdownOutline
	var block *markdownCodeBlock
	var blockLines []string
	var fence string // the opening fence's run of ` or ~ while in a block
	currentHeading := "(before the first heading)"
	for i, line := range strings.Split(src, "\n") {
		lineNo := i + 1
		trimmed := strings.TrimLeft(line, " ")
		if block != nil {
			blockLines = append(blockLines, line)
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]+" \t") == "" {
				block.text = strings.Join(blockLines, "\n")
				out.codeBlocks = append(out.codeBlocks, *block)
				block, blockLines, fence = nil, nil, ""
			}
			continue
		}
		if run := fenceRun(trimmed); run != "" {
			block = &markdownCodeBlock{line: lineNo, heading: currentHeading}
			blockLines = []string{line}
			fence = run
			continue
		}
		if m := atxHeading.FindStringSubmatch(line); m != nil {
			out.headings = append(out.headings, markdownHeading{level: len(m[1]), text: m[2], line: lineNo})
			currentHeading = m[1] + " " + m[2]
		}
	}
	if block != nil {
		return markdownOutline{}, fmt.Errorf("the code block opened on line %d is never closed", block.line)
	}
	out.envVars = slices.Compact(slices.Sorted(slices.Values(envVarName.FindAllString(src, -1))))
	return out, nil
}

// fenceRun returns the run of three or more backticks or tildes that opens a
// fenced code block, or "" when line does not open one.
func fenceRun(line string) string {
	for _, c := range []string{"`", "~"} {
		run := line[:len(line)-len(strings.TrimLeft(line, c))]
		if len(run) >= 3 {
			return run
		}
	}
	return ""
}

func readMarkdownOutline(t *testing.T, path string) markdownOutline {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out, err := parseMarkdownOutline(string(src))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}

func TestDocsREADMEsInStep(t *testing.T) {
	const en, zh = "README.md", "README.zh-CN.md"
	enOutline := readMarkdownOutline(t, en)
	zhOutline := readMarkdownOutline(t, zh)

	t.Run("language links", func(t *testing.T) {
		for path, link := range map[string]string{en: "[简体中文](" + zh + ")", zh: "[English](" + en + ")"} {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.SplitN(string(src), "\n", 6)
			if top := strings.Join(lines[:min(5, len(lines))], "\n"); !strings.Contains(top, link) {
				t.Errorf("%s does not link to the other README near its top (want %s in its first 5 lines)", path, link)
			}
		}
	})

	t.Run("headings", func(t *testing.T) {
		if slices.EqualFunc(enOutline.headings, zhOutline.headings, func(a, b markdownHeading) bool { return a.level == b.level }) {
			return
		}
		var report strings.Builder
		for i := range max(len(enOutline.headings), len(zhOutline.headings)) {
			left, right := "—", "—"
			mark := " "
			if i < len(enOutline.headings) {
				h := enOutline.headings[i]
				left = fmt.Sprintf("%d: %s %s", h.line, strings.Repeat("#", h.level), h.text)
			}
			if i < len(zhOutline.headings) {
				h := zhOutline.headings[i]
				right = fmt.Sprintf("%d: %s %s", h.line, strings.Repeat("#", h.level), h.text)
			}
			if i >= len(enOutline.headings) || i >= len(zhOutline.headings) ||
				enOutline.headings[i].level != zhOutline.headings[i].level {
				mark = "≠"
			}
			fmt.Fprintf(&report, "%s %-60s | %s\n", mark, left, right)
		}
		t.Errorf("the heading outlines differ (%s | %s, by line):\n%s", en, zh, report.String())
	})

	t.Run("code blocks", func(t *testing.T) {
		for i := range max(len(enOutline.codeBlocks), len(zhOutline.codeBlocks)) {
			if i >= len(enOutline.codeBlocks) {
				b := zhOutline.codeBlocks[i]
				t.Errorf("%s has a code block on line %d (under %q) that %s lacks", zh, b.line, b.heading, en)
				continue
			}
			if i >= len(zhOutline.codeBlocks) {
				b := enOutline.codeBlocks[i]
				t.Errorf("%s has a code block on line %d (under %q) that %s lacks", en, b.line, b.heading, zh)
				continue
			}
			a, b := enOutline.codeBlocks[i], zhOutline.codeBlocks[i]
			if a.text != b.text {
				t.Errorf("code block %d differs: %s line %d (under %q) vs %s line %d (under %q); first difference:\n%s",
					i+1, en, a.line, a.heading, zh, b.line, b.heading, firstDifferentLine(a.text, b.text))
			}
		}
	})

	t.Run("environment variables", func(t *testing.T) {
		for _, name := range enOutline.envVars {
			if !slices.Contains(zhOutline.envVars, name) {
				t.Errorf("%s mentions %s, %s does not", en, name, zh)
			}
		}
		for _, name := range zhOutline.envVars {
			if !slices.Contains(enOutline.envVars, name) {
				t.Errorf("%s mentions %s, %s does not", zh, name, en)
			}
		}
	})
}

// firstDifferentLine shows the first line where a and b differ.
func firstDifferentLine(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range max(len(al), len(bl)) {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y || i >= len(al) || i >= len(bl) {
			return fmt.Sprintf("  block line %d:\n  - %q\n  + %q", i+1, x, y)
		}
	}
	return "  (none)"
}

// TestDocsOutlineParser checks the parser the README test relies on, so that
// a passing README test means the READMEs agree, not that both parsed to
// nothing.
func TestDocsOutlineParser(t *testing.T) {
	const doc = "# Title\n" +
		"\n" +
		"Set `WXLOGIN_ADDR` or WECHAT_APPID; WXLOGIN_* is a pattern.\n" +
		"## One\n" +
		"```sh\n" +
		"# not a heading\n" +
		"WXLOGIN_DB=x go run .\n" +
		"```\n" +
		"### One.a ###\n" +
		"## C#\n" +
		"- a list item:\n" +
		"  ~~~~json\n" +
		"  {\"a\": \"```\"}\n" +
		"  ~~~~\n" +
		"#not a heading\n" +
		"## 二\n"
	got, err := parseMarkdownOutline(doc)
	if err != nil {
		t.Fatal(err)
	}
	wantHeadings := []markdownHeading{
		{level: 1, text: "Title", line: 1},
		{level: 2, text: "One", line: 4},
		{level: 3, text: "One.a", line: 9},
		{level: 2, text: "C#", line: 10},
		{level: 2, text: "二", line: 16},
	}
	if !slices.Equal(got.headings, wantHeadings) {
		t.Errorf("headings = %+v, want %+v", got.headings, wantHeadings)
	}
	wantBlocks := []markdownCodeBlock{
		{text: "```sh\n# not a heading\nWXLOGIN_DB=x go run .\n```", line: 5, heading: "## One"},
		{text: "  ~~~~json\n  {\"a\": \"```\"}\n  ~~~~", line: 12, heading: "## C#"},
	}
	if !slices.Equal(got.codeBlocks, wantBlocks) {
		t.Errorf("code blocks = %+v, want %+v", got.codeBlocks, wantBlocks)
	}
	if want := []string{"WECHAT_APPID", "WXLOGIN_ADDR", "WXLOGIN_DB"}; !slices.Equal(got.envVars, want) {
		t.Errorf("environment variables = %q, want %q", got.envVars, want)
	}

	for _, unclosed := range []string{"```sh\necho\n", "~~~\n```\n", "````\n```\n"} {
		if _, err := parseMarkdownOutline(unclosed); err == nil {
			t.Errorf("%q: an unclosed code block is not reported", unclosed)
		}
	}
}
