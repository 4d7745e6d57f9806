package ddblocal

import "syscall"

// sysProcAttr kills DynamoDB Local with its parent, so a crashed test run leaves no java behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
