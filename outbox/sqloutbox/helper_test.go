package sqloutbox_test

func runHelperProcess() bool { return false }
