package timeline

import (
	_ "embed"
	"html/template"
	"io"
)

//go:embed page.html.tmpl
var pageSource string

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"n":   num,
	"add": func(a, b float64) float64 { return a + b },
}).Parse(pageSource))

// Render writes run's page to w.
func Render(w io.Writer, run *Run) error {
	return pageTemplate.Execute(w, layout(run))
}
