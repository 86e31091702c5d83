package playbooks

import "text/template/parse"

// walkSecretRefs notes every .Secrets.NAME (or $.Secrets.NAME) under n in
// used; any other use of .Secrets sets all.
func walkSecretRefs(n parse.Node, used map[string]bool, all *bool) {
	field := func(idents []string) {
		for i, id := range idents {
			if id != "Secrets" {
				continue
			}
			if i+1 < len(idents) {
				used[idents[i+1]] = true
			} else {
				*all = true
			}
		}
	}
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			walkSecretRefs(c, used, all)
		}
	case *parse.ActionNode:
		walkSecretRefs(n.Pipe, used, all)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			walkSecretRefs(c, used, all)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			walkSecretRefs(a, used, all)
		}
	case *parse.FieldNode:
		field(n.Ident)
	case *parse.VariableNode:
		field(n.Ident)
	case *parse.ChainNode:
		walkSecretRefs(n.Node, used, all)
		field(n.Field)
	case *parse.IfNode:
		walkBranch(&n.BranchNode, used, all)
	case *parse.RangeNode:
		walkBranch(&n.BranchNode, used, all)
	case *parse.WithNode:
		walkBranch(&n.BranchNode, used, all)
	case *parse.TemplateNode:
		walkSecretRefs(n.Pipe, used, all)
	}
}

func walkBranch(b *parse.BranchNode, used map[string]bool, all *bool) {
	walkSecretRefs(b.Pipe, used, all)
	walkSecretRefs(b.List, used, all)
	walkSecretRefs(b.ElseList, used, all)
}
